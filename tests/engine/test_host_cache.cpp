// The CPU backend's caching allocator (engine/cpu/host_cache.h): freed blocks of a size class come back
// to the next request of that class, small blocks and a disabled cache go to the system, the cap holds.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>

#include "engine/cpu/host_cache.h"
#include "engine/tensor.h"

using hdssl::cpu::HostBlockCache;

TEST(HostCache, SizeClassesAreAlignedAndAtMostAnEighthLarger) {
  EXPECT_EQ(HostBlockCache::size_class(1), 64u);
  EXPECT_EQ(HostBlockCache::size_class(100), 128u);
  for (size_t b : {size_t(65536), size_t(65537), size_t(100000), size_t(28311552), size_t(28311553), size_t(3) << 30}) {
    const size_t c = HostBlockCache::size_class(b);
    EXPECT_GE(c, b);
    EXPECT_EQ(c % 64, 0u);
    EXPECT_LE(double(c), double(b) * 1.125 + 64) << b;
  }
  EXPECT_EQ(HostBlockCache::size_class(size_t(3) << 20), size_t(3) << 20);  // 12 steps of 2^18: a class
  EXPECT_EQ(HostBlockCache::size_class(28311552), 29360128u);  // 512 x 512 x 27 floats: 13.5 -> 14 x 2^21
}

TEST(HostCache, ReusesAFreedBlockOfTheSameClass) {
  HostBlockCache cache(true, size_t(64) << 20);
  void* a = cache.allocate(1 << 20);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % 64, 0u);
  std::memset(a, 1, 1 << 20);  // the whole block is usable
  cache.deallocate(a, 1 << 20);
  EXPECT_EQ(cache.stats().cached_bytes, size_t(1) << 20);
  void* b = cache.allocate((1 << 20) - 100);  // same class
  EXPECT_EQ(a, b);
  EXPECT_EQ(cache.stats().hits, 1);
  EXPECT_EQ(cache.stats().cached_bytes, 0u);
  void* c = cache.allocate(2 << 20);  // another class: from the system
  EXPECT_NE(c, b);
  EXPECT_EQ(cache.stats().misses, 2);
  cache.deallocate(b, (1 << 20) - 100);
  cache.deallocate(c, 2 << 20);
  EXPECT_EQ(cache.stats().cached_bytes, size_t(3) << 20);
  cache.release();
  EXPECT_EQ(cache.stats().cached_bytes, 0u);
}

TEST(HostCache, SmallBlocksAndADisabledCacheKeepNothing) {
  HostBlockCache on(true, size_t(64) << 20), off(false, size_t(64) << 20);
  on.deallocate(on.allocate(1000), 1000);
  EXPECT_EQ(on.stats().cached_bytes, 0u);
  off.deallocate(off.allocate(1 << 20), 1 << 20);
  EXPECT_EQ(off.stats().cached_bytes, 0u);
  EXPECT_EQ(off.stats().hits + off.stats().misses, 0);
}

TEST(HostCache, FreesBeyondTheCapGoBackToTheSystem) {
  HostBlockCache cache(true, size_t(3) << 20);
  void* a = cache.allocate(2 << 20);
  void* b = cache.allocate(2 << 20);
  cache.deallocate(a, 2 << 20);
  cache.deallocate(b, 2 << 20);  // would make 4 MiB cached: freed instead
  EXPECT_EQ(cache.stats().cached_bytes, size_t(2) << 20);
}

TEST(HostCache, TensorsOfTheCpuBackendGetCleanValuesWhateverTheBlockHeld) {
  // A reused block holds the old tensor's bytes: zeros() and full() still write every element.
  { hdssl::Tensor t = hdssl::Tensor::full({256, 256}, 7.0, hdssl::DType::F32, hdssl::Device::cpu()); }
  hdssl::Tensor z = hdssl::Tensor::zeros({256, 256}, hdssl::DType::F32, hdssl::Device::cpu());
  const float* p = z.data<float>();
  for (int64_t i = 0; i < z.numel(); ++i) ASSERT_EQ(p[i], 0.0f);
}
