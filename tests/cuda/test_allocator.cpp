// The caching allocator (cuda/allocator.h): a second identical "training step" does no cudaMalloc, the
// bytes in use return to where they were, and the statistics add up; the free memory counts the cache. Also
// the no-device path of init().
#include "cuda/allocator.h"

#include <cuda_runtime.h>

#include "tests/cuda/parity.h"

namespace hdssl::test {
namespace {

// A miniature step touching every kind of allocation the real step makes: tensors of many sizes, a
// cuDNN workspace, CUB temporary storage, InfoNCE tiles and the BN partials.
void mini_step(Rng& rng) {
  const Device d = gpu();
  Backend& b = backend(d);
  Tensor x = random({2, 4, 12, 10, 6}, DType::F32, rng).to(d), w = random({8, 4, 3, 3, 3}, DType::F32, rng).to(d);
  Tensor y = Tensor::empty({2, 8, 12, 10, 6}, DType::F32, d);
  b.conv3d_forward(x, w, Tensor(), y, Conv3dArgs{});
  Tensor gamma = Tensor::full({8}, 1.0, DType::F32, d), beta = Tensor::zeros({8}, DType::F32, d);
  Tensor mean = Tensor::empty({8}, DType::F32, d), invstd = Tensor::empty({8}, DType::F32, d);
  Tensor rm = Tensor::zeros({8}, DType::F32, d), rv = Tensor::full({8}, 1.0, DType::F32, d);
  Tensor z = Tensor::empty_like(y);
  b.batchnorm_forward_train(y, gamma, beta, z, mean, invstd, rm, rv, BatchNormArgs{});
  Tensor dx = Tensor::empty_like(x), dw = Tensor::empty_like(w);
  b.conv3d_backward_data(z, w, dx, Conv3dArgs{});
  b.conv3d_backward_filter(x, z, dw, Conv3dArgs{});
  Tensor za = random({300, 32}, DType::F32, rng).to(d), zb = random({300, 32}, DType::F32, rng).to(d);
  Tensor loss = Tensor::empty({1}, DType::F32, d), la = Tensor::empty({300}, DType::F32, d),
         lb = Tensor::empty({300}, DType::F32, d);
  b.infonce_forward(za, zb, 0.1, loss, la, lb);
  Tensor sq = Tensor::zeros({1}, DType::F32, d);
  b.sum_squares(dw, sq);
  (void)loss.item();  // the one host read of a step (the logged loss)
}

TEST(CudaAllocator, SecondIdenticalStepDoesNoCudaMalloc) {
  HDSSL_REQUIRE_REAL_CUDA();
  Rng rng1(110), rng2(110), rng3(110);
  mini_step(rng1);  // first step: allocates, chooses conv algorithms
  backend(gpu()).synchronize();
  const cuda::AllocatorStats before = cuda::allocator_stats();
  mini_step(rng2);
  backend(gpu()).synchronize();
  const cuda::AllocatorStats after = cuda::allocator_stats();
  EXPECT_EQ(after.num_cuda_malloc, before.num_cuda_malloc) << "the second identical step called cudaMalloc";
  EXPECT_EQ(after.bytes_in_use, before.bytes_in_use) << "memory in use grew across one step";
  EXPECT_GT(after.num_allocations, before.num_allocations);
  mini_step(rng3);
  EXPECT_EQ(cuda::allocator_stats().num_cuda_malloc, before.num_cuda_malloc);
}

TEST(CudaAllocator, StatsAndSizeClasses) {
  HDSSL_REQUIRE_REAL_CUDA();
  EXPECT_EQ(cuda::CachingAllocator::size_class(1), 512u);
  EXPECT_EQ(cuda::CachingAllocator::size_class(512), 512u);
  EXPECT_EQ(cuda::CachingAllocator::size_class(513), 1024u);
  EXPECT_EQ(cuda::CachingAllocator::size_class((1u << 20) + 1), 2u << 20);
  cuda::CachingAllocator& a = cuda::allocator();
  const auto s0 = a.stats();
  void* p = a.allocate(3 << 20);
  ASSERT_NE(p, nullptr);
  const auto s1 = a.stats();
  EXPECT_EQ(s1.bytes_in_use, s0.bytes_in_use + (4u << 20));
  EXPECT_GE(s1.peak_bytes_in_use, s1.bytes_in_use);
  a.deallocate(p);
  void* q = a.allocate(3 << 20);  // served from the cache
  EXPECT_EQ(q, p);
  EXPECT_EQ(a.stats().num_cuda_malloc, s1.num_cuda_malloc);
  a.deallocate(q);
  EXPECT_EQ(a.stats().bytes_in_use, s0.bytes_in_use);
  a.reset_peak();
  EXPECT_EQ(a.stats().peak_bytes_in_use, a.stats().bytes_in_use);
}

// The device's free memory that ./pretrain compares its estimate with (models/memory_estimate.h): the
// driver's free memory plus the allocator's cached blocks, so a block taken from the driver or from the
// cache lowers it and a block returned to the cache raises it again. Other processes on the GPU may move
// the driver's number a little between two reads: hence the tolerance.
TEST(CudaAllocator, FreeMemoryIsTheDriversPlusTheCachedBlocks) {
  HDSSL_REQUIRE_REAL_CUDA();
  constexpr int64_t kBlock = int64_t(256) << 20, kSlack = int64_t(16) << 20;
  cuda::CachingAllocator& a = cuda::allocator();
  const int64_t f0 = cuda::free_memory();
  size_t driver_free = 0, total = 0;
  ASSERT_EQ(cudaMemGetInfo(&driver_free, &total), cudaSuccess);
  EXPECT_GT(f0, 0);
  EXPECT_LE(f0, int64_t(total));
  const cuda::AllocatorStats st = a.stats();
  EXPECT_NEAR(double(f0), double(driver_free) + double(st.bytes_reserved - st.bytes_in_use), double(kSlack));
  EXPECT_NEAR(double(backend(gpu()).free_memory()), double(f0), double(kSlack)) << "the engine's query";
  void* p = a.allocate(size_t(kBlock));
  ASSERT_NE(p, nullptr);
  const int64_t f1 = cuda::free_memory();
  EXPECT_LE(f1, f0 - kBlock + kSlack);
  a.deallocate(p);  // onto the free list: the driver's number stays, the cache grows
  EXPECT_NEAR(double(cuda::free_memory()), double(f1 + kBlock), double(kSlack));
}

// Runs everywhere: without a device init() returns false and the CUDA backend is absent, with a clear error.
TEST(CudaInit, NoDeviceMeansNoBackendAndAClearError) {
  if (cuda_ready() || selftest()) GTEST_SKIP() << "a CUDA device is present; this test covers the no-device path";
  EXPECT_FALSE(cuda::init());
  EXPECT_FALSE(cuda_available());
  try {
    backend(Device::cuda());
    ADD_FAILURE() << "backend(cuda) without a device did not throw";
  } catch (const Error& e) {  // the engine library knows it was built with CUDA (engine/CMakeLists.txt)
    EXPECT_NE(std::string(e.what()).find("built with CUDA; no device found"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace hdssl::test
