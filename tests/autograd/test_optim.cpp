// Adam and gradient-norm clipping against the PyTorch formulas written out in plain double loops
// (the torch-produced fixtures are checked in tests/engine/test_linear_losses_optim_known_answers.cpp);
// skipped parameters, per-parameter step counts, and the fused clipping path being bit-identical.
#include <gtest/gtest.h>

#include <cmath>

#include "autograd/optim.h"
#include "engine/random.h"

using namespace hdssl;

namespace {
std::vector<double> randoms(size_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<double> v(n);
  for (double& x : v) x = rng.uniform(-1.0, 1.0);
  return v;
}

// torch.optim.Adam's update for one tensor, written out.
struct RefAdam {
  std::vector<double> p, m, v;
  int64_t t = 0;
  void step(const std::vector<double>& g, const AdamArgs& a) {
    ++t;
    const double bc1 = 1 - std::pow(a.beta1, double(t)), bc2 = 1 - std::pow(a.beta2, double(t));
    for (size_t i = 0; i < p.size(); ++i) {
      m[i] = a.beta1 * m[i] + (1 - a.beta1) * g[i];
      v[i] = a.beta2 * v[i] + (1 - a.beta2) * g[i] * g[i];
      p[i] -= a.lr / bc1 * m[i] / (std::sqrt(v[i]) / std::sqrt(bc2) + a.eps);
    }
  }
};
}  // namespace

TEST(Adam, MatchesPyTorchFormulaOverSteps) {
  AdamArgs args;
  args.lr = 1e-2;
  std::vector<double> p0 = randoms(6, 1);
  Variable w(Tensor::from_vector(p0, {2, 3}), true);
  Adam opt({w}, args);
  RefAdam ref{p0, std::vector<double>(6, 0.0), std::vector<double>(6, 0.0)};
  for (int s = 0; s < 5; ++s) {
    std::vector<double> g = randoms(6, 100 + uint64_t(s));
    w.grad() = Tensor::from_vector(g, {2, 3});
    opt.step();
    ref.step(g, args);
  }
  const std::vector<double> got = w.value().to_vector<double>();
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], ref.p[i], 1e-15) << i;
  EXPECT_EQ(opt.step_count(), 5);
  EXPECT_EQ(opt.param_steps()[0], 5);
  const std::vector<double> m = opt.exp_avg()[0].to_vector<double>();
  for (size_t i = 0; i < m.size(); ++i) EXPECT_NEAR(m[i], ref.m[i], 1e-15) << i;
}

TEST(Adam, ParameterWithoutGradientIsSkippedAndKeepsItsOwnStepCount) {
  Variable a(Tensor::from_vector(std::vector<double>{1.0, 2.0}, {2}), true);
  Variable b(Tensor::from_vector(std::vector<double>{3.0, 4.0}, {2}), true);
  Adam opt({a, b});
  a.grad() = Tensor::from_vector(std::vector<double>{0.5, -0.5}, {2});
  opt.step();
  opt.step();
  EXPECT_EQ(b.value().to_vector<double>(), (std::vector<double>{3.0, 4.0}));
  EXPECT_EQ(opt.param_steps(), (std::vector<int64_t>{2, 0}));
  // b's first update uses bias correction of step 1: |update| = lr * |g| / (|g| + eps) ~ lr.
  b.grad() = Tensor::from_vector(std::vector<double>{2.0, -2.0}, {2});
  opt.step();
  const std::vector<double> bv = b.value().to_vector<double>();
  EXPECT_NEAR(bv[0], 3.0 - 3e-4, 1e-10);
  EXPECT_NEAR(bv[1], 4.0 + 3e-4, 1e-10);
  opt.zero_grad();
  EXPECT_FALSE(a.grad().defined());
  EXPECT_FALSE(b.grad().defined());
}

TEST(ClipGradNorm, ScalesOnlyAboveTheLimitAndReturnsTheNormBefore) {
  Variable a(Tensor::zeros({2}, DType::F64), true), b(Tensor::zeros({1}, DType::F64), true), c(Tensor::zeros({1}, DType::F64), true);
  a.grad() = Tensor::from_vector(std::vector<double>{3.0, 0.0}, {2});
  b.grad() = Tensor::from_vector(std::vector<double>{4.0}, {1});  // total norm 5; c has no gradient
  EXPECT_DOUBLE_EQ(grad_norm({a, b, c}), 5.0);
  EXPECT_DOUBLE_EQ(clip_grad_norm({a, b, c}, 10.0), 5.0);  // below the limit: unchanged
  EXPECT_EQ(a.grad().to_vector<double>(), (std::vector<double>{3.0, 0.0}));
  EXPECT_DOUBLE_EQ(clip_grad_norm({a, b, c}, 1.0), 5.0);
  const double s = 1.0 / (5.0 + 1e-6);
  EXPECT_DOUBLE_EQ(a.grad().to_vector<double>()[0], 3.0 * s);
  EXPECT_DOUBLE_EQ(b.grad().to_vector<double>()[0], 4.0 * s);
  EXPECT_FALSE(c.grad().defined());
  EXPECT_DOUBLE_EQ(clip_coefficient(5.0, 1.0), s);
  EXPECT_DOUBLE_EQ(clip_coefficient(0.5, 1.0), 1.0);
}

TEST(ClipGradNorm, FoldedIntoAdamIsBitIdenticalToClippingFirst) {
  for (DType dt : {DType::F32, DType::F64}) {
    auto make = [&](uint64_t seed, int64_t n) { return Variable(Tensor::from_vector(randoms(size_t(n), seed), {n}).to(dt), true); };
    std::vector<Variable> p1{make(1, 7), make(2, 5)}, p2{make(1, 7), make(2, 5)};
    Adam o1(p1), o2(p2);
    for (int s = 0; s < 3; ++s) {
      for (size_t k = 0; k < 2; ++k) {
        Tensor g = Tensor::from_vector(randoms(size_t(p1[k].value().numel()), 50 + 10 * uint64_t(s) + k), p1[k].shape()).to(dt);
        p1[k].grad() = g.clone();
        p2[k].grad() = g.clone();
      }
      clip_grad_norm(p1, 0.3);  // the norm of these gradients is ~2: clipping is active
      o1.step();
      o2.step(clip_coefficient(grad_norm(p2), 0.3));
    }
    for (size_t k = 0; k < 2; ++k)
      EXPECT_EQ(p1[k].value().to(DType::F64).to_vector<double>(), p2[k].value().to(DType::F64).to_vector<double>())
          << dtype_name(dt) << " parameter " << k;
  }
}

namespace hdssl {
namespace {
// The clip factor computed on the device (the backend's clip_scale, in double) is the host's
// clip_coefficient() rounded to the dtype, including a NaN or infinite norm and a zero one.
TEST(ClipScale, OnTheDeviceEqualsTheHostCoefficientBitForBit) {
  for (DType dt : {DType::F32, DType::F64})
    for (double sum : {0.0, 1e-12, 0.25, 0.81, 1.0, 4.0, 1234.5678, 1e30, double(INFINITY), double(NAN)})
      for (double max_norm : {0.3, 1.0, 5.0}) {
        Tensor s = Tensor::full({1}, sum, dt);
        const double host = clip_coefficient(std::sqrt(s.item()), max_norm);
        const double dev = clip_scale(s, max_norm).item();
        if (dt == DType::F64) EXPECT_EQ(dev, host) << "sum " << sum << " max_norm " << max_norm;
        else EXPECT_EQ(float(dev), float(host)) << "sum " << sum << " max_norm " << max_norm;
      }
  EXPECT_EQ(clip_scale(Tensor::full({1}, double(NAN), DType::F64), 1.0).item(), 1.0);  // std::min's rule
  EXPECT_EQ(clip_scale(Tensor::full({1}, double(INFINITY), DType::F64), 1.0).item(), 0.0);
}

// Adam reading its factor from a device tensor (grad_sum_squares -> clip_scale -> step(Tensor)) makes the
// same update as the host route (grad_norm -> clip_coefficient -> step(double)), bit for bit.
TEST(ClipScale, AdamWithTheDeviceFactorEqualsTheHostRoute) {
  for (DType dt : {DType::F32, DType::F64}) {
    auto make = [&](uint64_t seed, int64_t n) {
      return Variable(Tensor::from_vector(randoms(size_t(n), seed), {n}).to(dt), true);
    };
    std::vector<Variable> p1{make(1, 7), make(2, 5)}, p2{make(1, 7), make(2, 5)};
    Adam o1(p1), o2(p2);
    for (int s = 0; s < 4; ++s) {
      for (size_t k = 0; k < 2; ++k) {
        Tensor g = Tensor::from_vector(randoms(size_t(p1[k].value().numel()), 70 + 10 * uint64_t(s) + k),
                                       p1[k].shape()).to(dt);
        if (s == 3) g = Tensor::from_vector(std::vector<double>(size_t(g.numel()), 1e-4), g.shape()).to(dt);
        p1[k].grad() = g.clone();
        p2[k].grad() = g.clone();
      }
      o1.step(clip_coefficient(grad_norm(p1), 0.3));  // step 3's tiny gradients: no clipping (factor 1)
      o2.step(clip_scale(grad_sum_squares(p2), 0.3));
    }
    for (size_t k = 0; k < 2; ++k)
      EXPECT_EQ(p1[k].value().to(DType::F64).to_vector<double>(), p2[k].value().to(DType::F64).to_vector<double>())
          << dtype_name(dt) << " parameter " << k;
  }
  EXPECT_FALSE(grad_sum_squares({Variable(Tensor::zeros({2}, DType::F64), true)}).defined());  // no gradient
}
}  // namespace
}  // namespace hdssl
