// The captured pretraining step on the GPU (--cuda-graph; cuda/step_graph.cpp): replaying the captured
// step N times gives the same parameters, Adam state, BatchNorm statistics and loss terms, bit for bit, as
// N eager steps (deterministic mode, so that both run the same kernels in the same order), with a new
// batch every step; no cudaMalloc during the replays; the private pool's blocks never leave it. In the
// CPU self-test (HDSSL_PARITY_SELFTEST=1) the first test runs with the CPU recorder instead.
#include <cstring>
#include <memory>

#include "cuda/allocator.h"
#include "cuda/context.h"
#include "engine/step_graph.h"
#include "models/pretrain_step.h"
#include "tests/cuda/parity.h"
#include "tests/tiny_pretraining.h"

namespace hdssl::test {
namespace {

struct Net {
  std::unique_ptr<models::Pretrainer> model;
  explicit Net(Device d) : model(tiny_pretrainer(DType::F32, d)) {}
};

models::PretrainInputs batch(Device d, int64_t k) {
  Rng data(uint64_t(100 + k));
  return map_inputs(tiny_pretrain_batch(data, DType::F32, 24), [&](const Tensor& t) { return on(d, t); });
}

bool same_bits(const Tensor& a, const Tensor& b) {
  const Tensor ha = a.to(Device::cpu()), hb = b.to(Device::cpu());
  return ha.shape() == hb.shape() && std::memcmp(ha.raw(), hb.raw(), ha.nbytes()) == 0;
}

struct DeterministicScope {
  bool was = deterministic();
  DeterministicScope() { set_deterministic(true); }
  ~DeterministicScope() { set_deterministic(was); }
};

}  // namespace

TEST(CudaStepGraph, ReplayEqualsEagerBitForBit) {
  HDSSL_REQUIRE_CUDA();
  DeterministicScope det;
  const Device d = gpu();
  Net e(d), g(d);
  models::StepSettings es, gs;
  es.log_every = gs.log_every = 4;
  gs.graph = true;
  gs.graph_warmup = 2;
  models::PretrainStep eager(*e.model, es), graphed(*g.model, gs);
  for (int64_t k = 1; k <= 7; ++k) {
    models::StepResult re = eager.run(batch(d, k), k), rg = graphed.run(batch(d, k), k);
    const double le = re.l(), lg = rg.l(), se = re.grad_sum_squares.get(), sg = rg.grad_sum_squares.get();
    EXPECT_EQ(std::memcmp(&le, &lg, sizeof le), 0) << "L of step " << k << ": " << le << " vs " << lg;
    EXPECT_EQ(std::memcmp(&se, &sg, sizeof se), 0) << "sum of squared gradients, step " << k;
  }
  ASSERT_TRUE(graphed.captured());
  auto pe = e.model->named_parameters(), pg = g.model->named_parameters();
  for (size_t i = 0; i < pe.size(); ++i)
    EXPECT_TRUE(same_bits(pe[i].second.value(), pg[i].second.value())) << pe[i].first;
  auto be = e.model->named_buffers(), bg = g.model->named_buffers();
  for (size_t i = 0; i < be.size(); ++i) {
    if (be[i].second.tensor) EXPECT_TRUE(same_bits(*be[i].second.tensor, *bg[i].second.tensor)) << be[i].first;
    else EXPECT_EQ(*be[i].second.counter, *bg[i].second.counter) << be[i].first;
  }
  for (size_t i = 0; i < eager.optimizer().exp_avg().size(); ++i) {
    EXPECT_TRUE(same_bits(eager.optimizer().exp_avg()[i], graphed.optimizer().exp_avg()[i])) << "exp_avg " << i;
    EXPECT_TRUE(same_bits(eager.optimizer().exp_avg_sq()[i], graphed.optimizer().exp_avg_sq()[i]))
        << "exp_avg_sq " << i;
  }
  EXPECT_EQ(eager.optimizer().param_steps(), graphed.optimizer().param_steps());
}

TEST(CudaStepGraph, NoCudaMallocDuringReplays) {
  HDSSL_REQUIRE_REAL_CUDA();
  const Device d = gpu();
  Net g(d);
  models::StepSettings s;
  s.log_every = 1000;
  s.graph = true;
  s.graph_warmup = 2;
  models::PretrainStep step(*g.model, s);
  const models::PretrainInputs in = batch(d, 1);
  for (int64_t k = 1; k <= 4; ++k) (void)step.run(in, k);  // 2 eager, the capture (+ replay), 1 replay
  ASSERT_TRUE(step.captured());
  backend(d).synchronize();
  const cuda::AllocatorStats before = cuda::allocator_stats();
  for (int64_t k = 5; k <= 10; ++k) (void)step.run(in, k);
  backend(d).synchronize();
  const cuda::AllocatorStats after = cuda::allocator_stats();
  EXPECT_EQ(after.num_cuda_malloc, before.num_cuda_malloc) << "a replay called cudaMalloc";
  EXPECT_EQ(after.num_cuda_free, before.num_cuda_free) << "a replay called cudaFree";
  std::printf("captured step: %zu graph nodes\n", step.captured_calls());
}

// The allocator's rules for a capture, without one: a pool block never reaches the general cache until the
// pool is released, and a general block freed while the pool is open is set aside until then.
TEST(CudaStepGraph, PrivatePoolBlocksStayPrivate) {
  HDSSL_REQUIRE_REAL_CUDA();
  cuda::CachingAllocator a;
  void* general = a.allocate(1 << 20);
  const int pool = a.begin_private_pool();
  a.deallocate(general);                 // freed during the capture: set aside
  void* inside = a.allocate(1 << 20);    // from the pool: a new block, not `general`
  EXPECT_NE(inside, general);
  a.deallocate(inside);                  // back to the pool
  void* inside2 = a.allocate(1 << 20);   // the pool reuses its own block within the capture
  EXPECT_EQ(inside2, inside);
  a.deallocate(inside2);
  a.end_private_pool();
  EXPECT_GE(a.private_pool_bytes(pool), size_t(1) << 20);
  void* after = a.allocate(1 << 20);     // general cache: neither the pool's block nor the set-aside one
  EXPECT_NE(after, inside);
  EXPECT_NE(after, general);
  a.deallocate(after);
  a.release_private_pool(pool);          // the graph is gone: both join the general cache
  void* x = a.allocate(1 << 20);
  void* y = a.allocate(1 << 20);
  void* z = a.allocate(1 << 20);
  EXPECT_TRUE((x == inside || y == inside || z == inside) && (x == general || y == general || z == general));
  a.deallocate(x);
  a.deallocate(y);
  a.deallocate(z);
}

// An exception inside a capture (here a host read) ends it: the stream is not left in capture mode (every
// later call on it would fail), the private pool is closed, nothing ran; a new capture afterwards works,
// including a cudaMalloc inside it (the allocator's relaxed-mode exchange), and its replay runs.
TEST(CudaStepGraph, AnExceptionInsideACaptureEndsItAndANewCaptureWorks) {
  HDSSL_REQUIRE_REAL_CUDA();
  const Device d = gpu();
  Tensor x = Tensor::full({256}, 1.0, DType::F32, d);
  const Tensor one = Tensor::zeros({1}, DType::F32, d);
  try {
    CaptureGuard capture(d);
    backend(d).fill(x, 2.0);                                // captured, never run
    const Tensor tmp = Tensor::empty({1 << 20}, DType::F32, d);  // from the private pool
    (void)one.item();                                        // a host read: throws
    FAIL() << "item() inside a CUDA capture did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("host read inside a captured step"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(capturing());
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusActive;
  ASSERT_EQ(cudaStreamIsCapturing(cuda::ctx().stream, &status), cudaSuccess);
  EXPECT_EQ(status, cudaStreamCaptureStatusNone) << "the aborted capture left the stream capturing";
  EXPECT_FALSE(cuda::allocator().capturing()) << "the aborted capture left its private pool open";
  EXPECT_EQ(x.to_vector<float>(), std::vector<float>(256, 1.0f)) << "a call ran during the aborted capture";

  { const Tensor cached = Tensor::empty({int64_t(8) << 20}, DType::F32, d); }  // a free block in the cache
  const cuda::AllocatorStats before = cuda::allocator_stats();
  const int64_t mallocs = before.num_cuda_malloc;
  std::unique_ptr<StepGraph> g;
  Tensor big;  // an odd size no cached block fits: a cudaMalloc inside the capture
  {
    CaptureGuard capture(d);
    big = Tensor::empty({(int64_t(64) << 20) + 4099}, DType::F32, d);
    backend(d).fill(big, 3.0);
    backend(d).fill(x, 5.0);
    g = capture.end();
  }
  EXPECT_GT(cuda::allocator_stats().num_cuda_malloc, mallocs) << "the capture did not cudaMalloc (test setup)";
  EXPECT_GT(cuda::allocator_stats().num_cuda_free, before.num_cuda_free)
      << "the general cache was not released before the capture (its blocks would sit beside the pool's)";
  EXPECT_EQ(x.to_vector<float>(), std::vector<float>(256, 1.0f)) << "a call ran during the capture";
  g->replay();
  EXPECT_EQ(x.to_vector<float>(), std::vector<float>(256, 5.0f));
  const std::vector<float> b = big.to_vector<float>();
  EXPECT_EQ(b.front(), 3.0f);
  EXPECT_EQ(b.back(), 3.0f);
  g.reset();  // the pool goes back to the general cache; `big` still holds its block
  big = Tensor();
}

}  // namespace hdssl::test
