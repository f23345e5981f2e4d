// Float64 finite-difference checks of the dense, row-wise and loss functions, every input; InfoNCE against
// a direct reference (three full similarity matrices in plain loops), including sizes above the kernel's
// row tile (256 rows of the stacked [za; zb]) that are not a multiple of it; float32 agreement with float64.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <tuple>

#include "autograd/functions.h"
#include "autograd/gradcheck.h"
#include "engine/random.h"

using namespace hdssl;

namespace {
constexpr double kTol = 1e-6;

Tensor random_tensor(const Shape& s, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  Rng rng(seed);
  std::vector<double> v(size_t(numel(s)));
  for (double& x : v) x = rng.uniform(lo, hi);
  return Tensor::from_vector(v, s);
}
Variable leaf(const Shape& s, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  return Variable(random_tensor(s, seed, lo, hi), true);
}
// Rows of unit length, as the projection head produces them.
Tensor unit_rows(int64_t n, int64_t d, uint64_t seed) {
  Rng rng(seed);
  std::vector<double> v(size_t(n * d));
  for (int64_t i = 0; i < n; ++i) {
    double ss = 0;
    for (int64_t j = 0; j < d; ++j) { v[size_t(i * d + j)] = rng.normal(); ss += v[size_t(i * d + j)] * v[size_t(i * d + j)]; }
    for (int64_t j = 0; j < d; ++j) v[size_t(i * d + j)] /= std::sqrt(ss);
  }
  return Tensor::from_vector(v, {n, d});
}

// Runs gradcheck, prints the error (the suite's report) and asserts it.
void expect_gradcheck(const char* what, const std::function<Variable(const std::vector<Variable>&)>& f,
                      const std::vector<Variable>& inputs) {
  GradCheckResult r = gradcheck(f, inputs);
  std::printf("[gradcheck] %-40s max rel error %.3e\n", what, r.max_rel_error);
  EXPECT_LT(r.max_rel_error, kTol) << what << ": max relative error " << r.max_rel_error << " at " << r.worst;
}

// docs/method.md section 3, step 7 written out: three N x N matrices, diagonals of the in-view ones masked to -inf.
double infonce_reference(const Tensor& za_t, const Tensor& zb_t, double tau) {
  const std::vector<double> za = za_t.to_vector<double>(), zb = zb_t.to_vector<double>();
  const int64_t N = za_t.size(0), D = za_t.size(1);
  const double inf = std::numeric_limits<double>::infinity();
  auto dot = [&](const std::vector<double>& x, int64_t i, const std::vector<double>& y, int64_t j) {
    double s = 0;
    for (int64_t d = 0; d < D; ++d) s += x[size_t(i * D + d)] * y[size_t(j * D + d)];
    return s / tau;
  };
  std::vector<double> aa(size_t(N * N)), ab(size_t(N * N)), bb(size_t(N * N));
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < N; ++j) {
      aa[size_t(i * N + j)] = i == j ? -inf : dot(za, i, za, j);
      bb[size_t(i * N + j)] = i == j ? -inf : dot(zb, i, zb, j);
      ab[size_t(i * N + j)] = dot(za, i, zb, j);
    }
  auto lse = [inf](const std::vector<double>& row) {
    double m = -inf, s = 0;
    for (double v : row) m = std::max(m, v);
    for (double v : row) s += std::exp(v - m);
    return m + std::log(s);
  };
  double loss_a = 0, loss_b = 0;
  for (int64_t k = 0; k < N; ++k) {
    std::vector<double> ra, rb;
    for (int64_t j = 0; j < N; ++j) { ra.push_back(aa[size_t(k * N + j)]); ra.push_back(ab[size_t(k * N + j)]); }
    for (int64_t j = 0; j < N; ++j) { rb.push_back(bb[size_t(k * N + j)]); rb.push_back(ab[size_t(j * N + k)]); }
    loss_a += -ab[size_t(k * N + k)] + lse(ra);
    loss_b += -ab[size_t(k * N + k)] + lse(rb);
  }
  return (loss_a / double(N) + loss_b / double(N)) / 2;
}
}  // namespace

TEST(GradcheckLinear, MatmulAllTransposeCombinations) {
  const int64_t M = 3, K = 4, N = 5;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      Variable a = leaf(ta ? Shape{K, M} : Shape{M, K}, 10 + uint64_t(2 * ta + tb));
      Variable b = leaf(tb ? Shape{N, K} : Shape{K, N}, 20 + uint64_t(2 * ta + tb));
      const std::string what = std::string("matmul trans_a=") + char('0' + ta) + " trans_b=" + char('0' + tb);
      expect_gradcheck(what.c_str(), [&](const std::vector<Variable>& v) { return ag::matmul(v[0], v[1], ta, tb); },
                       {a, b});
      Variable y = ag::matmul(a, b, ta, tb);
      EXPECT_EQ(y.shape(), (Shape{M, N}));
    }
}

TEST(GradcheckLinear, LinearWithAndWithoutBias) {
  Variable x = leaf({4, 3}, 31), w = leaf({5, 3}, 32), b = leaf({5}, 33);
  expect_gradcheck("linear with bias", [](const std::vector<Variable>& v) { return ag::linear(v[0], v[1], v[2]); },
                   {x, w, b});
  expect_gradcheck("linear without bias",
                   [](const std::vector<Variable>& v) { return ag::linear(v[0], v[1], Variable()); }, {x, w});
}

TEST(GradcheckRowwise, L2NormalizeBothBranches) {
  Variable x = leaf({4, 6}, 41);
  expect_gradcheck("l2_normalize", [](const std::vector<Variable>& v) { return ag::l2_normalize(v[0]); }, {x});
  // eps = 5: rows of norm ~0.5 are divided by eps (linear), rows of norm ~25 by their own norm.
  std::vector<double> vals = random_tensor({4, 6}, 42).to_vector<double>();
  for (size_t i = 12; i < vals.size(); ++i) vals[i] *= 25.0 / std::sqrt(6.0 / 3.0);
  Variable mixed(Tensor::from_vector(vals, {4, 6}), true);
  expect_gradcheck("l2_normalize clamped rows (eps 5)",
                   [](const std::vector<Variable>& v) { return ag::l2_normalize(v[0], 5.0); }, {mixed});
  NoGradGuard ng;
  const std::vector<double> y = ag::l2_normalize(mixed, 5.0).value().to_vector<double>();
  int clamped = 0;
  for (int64_t i = 0; i < 4; ++i) {
    double n2 = 0, yy = 0;
    for (int64_t j = 0; j < 6; ++j) { n2 += vals[size_t(i * 6 + j)] * vals[size_t(i * 6 + j)]; yy += y[size_t(i * 6 + j)] * y[size_t(i * 6 + j)]; }
    const double expected = std::sqrt(n2) >= 5.0 ? 1.0 : std::sqrt(n2) / 5.0;
    EXPECT_NEAR(std::sqrt(yy), expected, 1e-12) << "row " << i;
    clamped += std::sqrt(n2) < 5.0;
  }
  EXPECT_EQ(clamped, 2);  // the check above really covered both branches
}

TEST(GradcheckRowwise, LogsumexpRows) {
  Variable x = leaf({4, 7}, 51, -3.0, 3.0);
  expect_gradcheck("logsumexp_rows", [](const std::vector<Variable>& v) { return ag::logsumexp_rows(v[0]); }, {x});
  // Stability: entries near 1000 would overflow exp without the max shift.
  Variable big(Tensor::from_vector(std::vector<double>{1000.0, 999.0, -1000.0, 0.0}, {2, 2}), false);
  const std::vector<double> out = ag::logsumexp_rows(big).value().to_vector<double>();
  EXPECT_NEAR(out[0], 1000.0 + std::log1p(std::exp(-1.0)), 1e-12);
  EXPECT_NEAR(out[1], 0.0, 1e-12);
}

TEST(GradcheckLosses, InfoNCESmall) {
  for (double tau : {0.1, 0.5}) {
    Variable za = leaf({7, 5}, 61, -0.5, 0.5), zb = leaf({7, 5}, 62, -0.5, 0.5);
    const std::string what = "infonce N=7 D=5 tau=" + std::to_string(tau).substr(0, 3);
    expect_gradcheck(what.c_str(), [tau](const std::vector<Variable>& v) { return ag::infonce(v[0], v[1], tau); },
                     {za, zb});
  }
}

TEST(GradcheckLosses, InfoNCEAboveTileSize) {
  // 2N = 280 rows: one full 256-row block and a partial block of 24.
  Variable za = leaf({140, 3}, 63, -0.5, 0.5), zb = leaf({140, 3}, 64, -0.5, 0.5);
  expect_gradcheck("infonce N=140 D=3 tau=0.1 (two tiles)",
                   [](const std::vector<Variable>& v) { return ag::infonce(v[0], v[1], 0.1); }, {za, zb});
}

TEST(GradcheckLosses, InfoNCEAfterL2Normalize) {
  Variable xa = leaf({6, 4}, 65), xb = leaf({6, 4}, 66);
  expect_gradcheck("infonce(l2_normalize) tau=0.1", [](const std::vector<Variable>& v) {
    return ag::infonce(ag::l2_normalize(v[0]), ag::l2_normalize(v[1]), 0.1);
  }, {xa, xb});
}

TEST(GradcheckLosses, MseBceDice) {
  Tensor t = random_tensor({2, 3, 4}, 71);
  expect_gradcheck("mse", [&](const std::vector<Variable>& v) { return ag::mse(v[0], t); }, {leaf({2, 3, 4}, 72)});
  Tensor labels = random_tensor({2, 3, 4}, 73, 0.0, 1.0);
  std::vector<double> lab = labels.to_vector<double>();
  for (double& x : lab) x = x > 0.6 ? 1.0 : 0.0;
  Tensor g = Tensor::from_vector(lab, {2, 3, 4});
  expect_gradcheck("bce_with_logits", [&](const std::vector<Variable>& v) { return ag::bce_with_logits(v[0], g); },
                   {leaf({2, 3, 4}, 74, -4.0, 4.0)});
  expect_gradcheck("soft_dice (p)", [&](const std::vector<Variable>& v) { return ag::soft_dice(v[0], g); },
                   {leaf({2, 3, 4}, 75, 0.05, 0.95)});
  Tensor g5 = g.reshape({2, 3, 2, 2, 1});  // a volume: Dice per (n,k) over X, Y, Z
  expect_gradcheck("soft_dice(sigmoid(x)) 5D",
                   [&](const std::vector<Variable>& v) { return ag::soft_dice(ag::sigmoid(v[0]), g5); },
                   {leaf({2, 3, 2, 2, 1}, 76, -3.0, 3.0)});
}

TEST(LossValues, BceIsStableForLargeLogits) {
  // x = +-50 with the matching label: log(1 + e^-50) ~ 2e-22; the wrong label costs 50.
  Variable x(Tensor::from_vector(std::vector<double>{50.0, -50.0, 50.0, -50.0}, {4}), false);
  Tensor t = Tensor::from_vector(std::vector<double>{1.0, 0.0, 0.0, 1.0}, {4});
  EXPECT_NEAR(ag::bce_with_logits(x, t).value().item(), (2 * 50.0 + 4 * std::log1p(std::exp(-50.0))) / 4, 1e-12);
}

TEST(LossValues, InfoNCEMatchesDirectReference) {
  for (auto [n, d, tau] : {std::tuple<int64_t, int64_t, double>{7, 5, 0.1}, {7, 5, 0.5}, {1, 4, 0.1},
                           {300, 16, 0.1}, {513, 8, 0.2}}) {
    Tensor za = unit_rows(n, d, 80 + uint64_t(n)), zb = unit_rows(n, d, 90 + uint64_t(n));
    const double got = ag::infonce(Variable(za), Variable(zb), tau).value().item();
    const double want = infonce_reference(za, zb, tau);
    EXPECT_NEAR(got, want, 1e-12) << "N=" << n << " D=" << d << " tau=" << tau;
    if (n == 300) std::printf("[infonce] N=300 D=16: tiled %.15f reference %.15f diff %.2e\n", got, want, got - want);
  }
}

TEST(LossValues, Float32AgreesWithFloat64) {
  // Every kernel of this family through its float path, against the float64 result.
  Tensor za = unit_rows(300, 16, 101), zb = unit_rows(300, 16, 102);
  auto f32 = [](const Tensor& t) { return Variable(t.to(DType::F32), true); };
  auto f64 = [](const Tensor& t) { return Variable(t, true); };
  auto run = [&](auto make) {
    Variable a = make(za), b = make(zb);
    Variable w = make(random_tensor({16, 16}, 103)), bias = make(random_tensor({16}, 104));
    Variable ha = ag::l2_normalize(ag::linear(a, w, bias)), hb = ag::l2_normalize(ag::linear(b, w, bias));
    Variable lse = ag::logsumexp_rows(ag::matmul(ha, hb, false, true));
    Variable loss = ag::add(ag::infonce(ha, hb, 0.1), ag::scale(ag::mean(lse), 0.01));
    Tensor target = random_tensor({300, 16}, 105).to(a.dtype());
    Tensor lab = random_tensor({300, 16}, 106, 0.0, 1.0).to(a.dtype());
    loss = ag::add(loss, ag::add(ag::mse(ha, target), ag::bce_with_logits(hb, lab)));
    loss = ag::add(loss, ag::soft_dice(ag::sigmoid(ag::add(ha, hb)), lab));
    loss.backward();
    std::vector<double> out{loss.value().item()};
    for (const Variable& v : {a, b, w, bias})
      for (double g : v.grad().to(DType::F64).to_vector<double>()) out.push_back(g);
    return out;
  };
  const std::vector<double> lo = run(f32), hi = run(f64);
  ASSERT_EQ(lo.size(), hi.size());
  double scale = 0, err = 0;
  for (size_t i = 0; i < hi.size(); ++i) { scale = std::max(scale, std::fabs(hi[i])); err = std::max(err, std::fabs(lo[i] - hi[i])); }
  EXPECT_LT(std::fabs(lo[0] - hi[0]), 1e-5 * std::fabs(hi[0])) << lo[0] << " vs " << hi[0];
  EXPECT_LT(err, 1e-4 * scale) << "float32 vs float64: max abs difference " << err << " (scale " << scale << ")";
}
