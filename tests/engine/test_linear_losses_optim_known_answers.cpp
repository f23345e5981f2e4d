// Known answers for linear, normalize, logsumexp, InfoNCE, BCE-with-logits, soft Dice and ten Adam steps
// (with and without gradient-norm clipping) from PyTorch: fixtures written by
// tests/reference/make_fixtures_linear_losses.py with Debian's torch 1.13, compared in float64 to 1e-10.
// Plus the backend GEMM's alpha/beta/transpose contract against plain loops, in float32 and float64.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

#include "autograd/functions.h"
#include "autograd/optim.h"
#include "tests/reference/fixture_file.h"
#include "engine/random.h"

using namespace hdssl;

namespace {
// The fixture file (named float64 arrays and scalars, see the Python script's docstring), plus rows of
// stacked arrays.
class Fixtures : public hdssl::testing::FixtureFile {
 public:
  Fixtures() : FixtureFile("linear_losses") {}
  // Row k of a stacked [steps, ...] array, with the given shape.
  Tensor row(const std::string& name, int64_t k, const Shape& shape) const {
    const std::vector<double> all = get(name).to_vector<double>();
    const size_t n = size_t(numel(shape));
    return Tensor::from_vector(std::vector<double>(all.begin() + long(k * int64_t(n)), all.begin() + long((k + 1) * int64_t(n))), shape);
  }
};

const Fixtures& fx() {
  static const Fixtures f;
  return f;
}

Variable param(const std::string& name) { return Variable(fx().get(name), true); }

// Elementwise |a - b| <= tol * max(1, |b|); reports the worst element.
void expect_close(const Tensor& got, const Tensor& want, const std::string& what, bool print = true, double tol = 1e-10) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  const std::vector<double> a = got.to(DType::F64).to_vector<double>(), b = want.to_vector<double>();
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double e = std::fabs(a[i] - b[i]) / std::max(1.0, std::fabs(b[i]));
    if (!(e <= worst)) { worst = e; at = i; }
  }
  EXPECT_LE(worst, tol) << what << ": element " << at << " got " << a[at] << " want " << b[at];
  if (print) std::printf("[known answer] %-28s max rel diff %.2e\n", what.c_str(), worst);
}
void expect_close(double got, double want, const std::string& what, double tol = 1e-10) {
  EXPECT_LE(std::fabs(got - want) / std::max(1.0, std::fabs(want)), tol) << what << ": got " << got << " want " << want;
  std::printf("[known answer] %-28s diff %.2e\n", what.c_str(), got - want);
}
}  // namespace

TEST(KnownAnswersLinearLosses, LinearWithAndWithoutBias) {
  for (const std::string c : {"linear_bias", "linear_nobias"}) {
    const bool bias = c == "linear_bias";
    Variable x = param(c + ".x"), w = param(c + ".w"), b = bias ? param(c + ".b") : Variable();
    Variable y = ag::linear(x, w, b);
    expect_close(y.value(), fx().get(c + ".y"), c + ".y");
    y.backward(fx().get(c + ".dy"));
    expect_close(x.grad(), fx().get(c + ".dx"), c + ".dx");
    expect_close(w.grad(), fx().get(c + ".dw"), c + ".dw");
    if (bias) expect_close(b.grad(), fx().get(c + ".db"), c + ".db");
  }
}

TEST(KnownAnswersLinearLosses, NormalizeAndLogsumexp) {
  Variable x = param("normalize.x");
  Variable y = ag::l2_normalize(x);
  expect_close(y.value(), fx().get("normalize.y"), "normalize.y");
  y.backward(fx().get("normalize.dy"));
  expect_close(x.grad(), fx().get("normalize.dx"), "normalize.dx");

  Variable l = param("logsumexp.x");
  Variable out = ag::logsumexp_rows(l);
  expect_close(out.value(), fx().get("logsumexp.y"), "logsumexp.y");
  out.backward(fx().get("logsumexp.dy"));
  expect_close(l.grad(), fx().get("logsumexp.dx"), "logsumexp.dx");
}

TEST(KnownAnswersLinearLosses, InfoNCEOfTheBench) {
  for (const std::string c : {"infonce_small", "infonce_tau05", "infonce_tiles"}) {
    Variable za = param(c + ".za"), zb = param(c + ".zb");
    Variable loss = ag::infonce(za, zb, fx().scalar(c + ".tau"));
    expect_close(loss.value().item(), fx().scalar(c + ".loss"), c + ".loss");
    loss.backward();
    expect_close(za.grad(), fx().get(c + ".dza"), c + ".dza");
    expect_close(zb.grad(), fx().get(c + ".dzb"), c + ".dzb");
  }
}

TEST(KnownAnswersLinearLosses, BceWithLogitsAndSoftDice) {
  Variable x = param("bce.x");
  Variable bce = ag::bce_with_logits(x, fx().get("bce.t"));
  expect_close(bce.value().item(), fx().scalar("bce.loss"), "bce.loss");
  bce.backward();
  expect_close(x.grad(), fx().get("bce.dx"), "bce.dx");

  Variable logits = param("dice.x");
  Variable dice = ag::soft_dice(ag::sigmoid(logits), fx().get("dice.t"));
  expect_close(dice.value().item(), fx().scalar("dice.loss"), "dice.loss");
  dice.backward();
  expect_close(logits.grad(), fx().get("dice.dx"), "dice.dx (through sigmoid)");
}

TEST(KnownAnswersLinearLosses, TenAdamStepsWithAndWithoutClipping) {
  // Clipping three ways: none; clip_grad_norm then step() (PyTorch's order); folded into step(scale).
  for (int mode = 0; mode < 3; ++mode) {
    const std::string c = mode == 0 ? "adam" : "adam_clip";
    Variable a = param(c + ".a0"), b = param(c + ".b0");
    AdamArgs args;
    args.lr = 3e-4;
    Adam opt({a, b}, args);
    for (int64_t k = 0; k < 10; ++k) {
      a.grad() = fx().row(c + ".ga", k, {2, 3});
      b.grad() = fx().row(c + ".gb", k, {4});
      double scale = 1.0;
      if (mode > 0) {
        const double want_norm = fx().get(c + ".norms").to_vector<double>()[size_t(k)];
        const double norm = mode == 1 ? clip_grad_norm({a, b}, 1.0) : grad_norm({a, b});
        EXPECT_NEAR(norm, want_norm, 1e-12 * want_norm) << c << " step " << k;
        if (mode == 2) scale = clip_coefficient(norm, 1.0);
      }
      opt.step(scale);
      opt.zero_grad();
      const std::string at = c + (mode == 2 ? " folded" : "") + " step " + std::to_string(k + 1);
      expect_close(a.value(), fx().row(c + ".a", k, {2, 3}), at + " a", k == 9);
      expect_close(b.value(), fx().row(c + ".b", k, {4}), at + " b", k == 9);
    }
    EXPECT_EQ(opt.step_count(), 10);
  }
}

TEST(BackendMatmul, AlphaBetaAndTransposesMatchLoops) {
  const int64_t M = 5, K = 7, N = 3;
  for (DType dt : {DType::F32, DType::F64})
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (double beta : {0.0, 2.0}) {
          Rng rng(uint64_t(7 + 4 * ta + 2 * tb));
          auto rnd = [&](int64_t n) { std::vector<double> v(static_cast<size_t>(n)); for (double& x : v) x = rng.uniform(-1, 1); return v; };
          const std::vector<double> av = rnd(M * K), bv = rnd(K * N), cv = rnd(M * N);
          Tensor a = Tensor::from_vector(av, ta ? Shape{K, M} : Shape{M, K}).to(dt);
          Tensor b = Tensor::from_vector(bv, tb ? Shape{N, K} : Shape{K, N}).to(dt);
          // beta = 0: out is not read, so a NaN there must not leak into the result.
          Tensor out = beta == 0 ? Tensor::full({M, N}, std::numeric_limits<double>::quiet_NaN(), dt)
                                 : Tensor::from_vector(cv, {M, N}).to(dt);
          backend(Device::cpu()).matmul(a, b, out, ta, tb, 0.5, beta);
          const std::vector<double> got = out.to(DType::F64).to_vector<double>();
          double worst = 0;
          for (int64_t i = 0; i < M; ++i)
            for (int64_t j = 0; j < N; ++j) {
              double s = 0;
              for (int64_t k = 0; k < K; ++k)
                s += av[size_t(ta ? k * M + i : i * K + k)] * bv[size_t(tb ? j * K + k : k * N + j)];
              const double want = 0.5 * s + (beta == 0 ? 0.0 : beta * cv[size_t(i * N + j)]);
              worst = std::max(worst, std::fabs(got[size_t(i * N + j)] - want));
            }
          EXPECT_LT(worst, dt == DType::F64 ? 1e-14 : 1e-5)
              << dtype_name(dt) << " trans_a " << ta << " trans_b " << tb << " beta " << beta;
        }
}
