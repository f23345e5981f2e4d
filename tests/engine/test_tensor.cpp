// Tensor basics: construction, views, conversions, host round trips; the RNG's thread-count independence.
#include <gtest/gtest.h>

#include <thread>

#include "engine/backend.h"
#include "engine/random.h"
#include "engine/tensor.h"

using namespace hdssl;

TEST(Tensor, ShapesStridesAndViews) {
  Tensor t = Tensor::zeros({2, 3, 4});
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.strides(), (std::vector<int64_t>{12, 4, 1}));
  Tensor v = t.reshape({6, -1});
  EXPECT_EQ(v.shape(), (Shape{6, 4}));
  EXPECT_EQ(v.storage(), t.storage());  // a view shares storage
  v.data<float>()[5] = 7.f;
  EXPECT_EQ(t.data<float>()[5], 7.f);
  EXPECT_THROW(t.reshape({5, 5}), Error);
  EXPECT_THROW(t.data<double>(), Error);  // wrong dtype is refused
}

TEST(Tensor, FromVectorCastCloneItem) {
  Tensor t = Tensor::from_vector<double>({1.5, -2.25, 3}, {3});
  Tensor f = t.to(DType::F32);
  EXPECT_EQ(f.dtype(), DType::F32);
  EXPECT_EQ(f.to_vector<float>(), (std::vector<float>{1.5f, -2.25f, 3.f}));
  Tensor c = t.clone();
  c.data<double>()[0] = 0;
  EXPECT_EQ(t.data<double>()[0], 1.5);  // clone is deep
  EXPECT_DOUBLE_EQ(Tensor::full({1}, 4.5, DType::F64).item(), 4.5);
  EXPECT_THROW(Tensor::from_vector<float>({1, 2}, {3}), Error);
}

TEST(Device, ParseAndAbsentCuda) {
  EXPECT_TRUE(Device::parse("cpu").is_cpu());
  EXPECT_EQ(Device::parse("cuda:1").index, 1);
  EXPECT_THROW(Device::parse("gpu"), Error);
  EXPECT_THROW(Device::parse("cuda:x"), Error);
  if (!cuda_available()) EXPECT_THROW(backend(Device::cuda(0)), Error);
}

TEST(Rng, DeterministicStreamsIndependentOfThreads) {
  // Each work item draws from its own split stream: the values cannot depend on which thread draws them.
  auto draw = [](int threads) {
    std::vector<double> out(64);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        for (int i = t; i < 64; i += threads) out[size_t(i)] = Rng(42).split(uint64_t(i)).uniform();
      });
    for (auto& th : pool) th.join();
    return out;
  };
  EXPECT_EQ(draw(1), draw(4));
  Rng a(7), b(7);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(a.next_u64(), b.next_u64());
  Rng c(7);
  c.set_state(a.state());
  EXPECT_EQ(c.uniform(), a.uniform());  // state restore continues the same sequence
  Rng d(8);
  EXPECT_NE(Rng(7).next_u64(), d.next_u64());
}

TEST(Rng, UniformAndNormalMoments) {
  Rng r(1);
  double s = 0, s2 = 0, n = 0, n2 = 0;
  const int N = 200000;
  for (int i = 0; i < N; ++i) {
    double u = r.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    s += u; s2 += u * u;
    double z = r.normal();
    n += z; n2 += z * z;
  }
  EXPECT_NEAR(s / N, 0.5, 0.005);
  EXPECT_NEAR(s2 / N - 0.25, 1.0 / 12, 0.005);
  EXPECT_NEAR(n / N, 0.0, 0.01);
  EXPECT_NEAR(n2 / N, 1.0, 0.02);
}
