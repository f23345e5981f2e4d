// Known answers for conv3d, max-pool, upsample and batch norm from PyTorch (fixtures written by
// tests/reference/make_fixtures_conv_pool_norm.py with Debian's torch 1.13), compared in float64 to 1e-10;
// plus checks PyTorch is not needed for: float32 conv against float64 conv (rel 1e-5), and a conv large
// enough to be split into several column-buffer slabs against a direct sum, single-sample and batched.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <omp.h>
#include <string>

#include "autograd/functions.h"
#include "tests/reference/fixture_file.h"
#include "engine/random.h"

using namespace hdssl;

namespace {
using Fixtures = hdssl::testing::FixtureFile;

const Fixtures& fixtures() {
  static const Fixtures f("conv_pool_norm");
  return f;
}

// Elementwise |a - b| <= tol * max(1, |b|); reports the worst element.
void expect_close(const Tensor& got, const Tensor& want, const std::string& what, double tol = 1e-10) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  const std::vector<double> a = got.to(DType::F64).to_vector<double>(), b = want.to_vector<double>();
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double e = std::fabs(a[i] - b[i]) / std::max(1.0, std::fabs(b[i]));
    if (!(e <= worst)) { worst = e; at = i; }
  }
  EXPECT_LE(worst, tol) << what << ": element " << at << " is " << a[at] << ", PyTorch " << b[at];
}

Variable param(const Tensor& t) { return Variable(t.clone(), true); }

void check_conv(const std::string& name, int pad, bool bias) {
  const Fixtures& f = fixtures();
  Variable x = param(f.get(name + ".x")), w = param(f.get(name + ".w"));
  Variable b = bias ? param(f.get(name + ".b")) : Variable();
  Variable y = ag::conv3d(x, w, b, pad);
  expect_close(y.value(), f.get(name + ".y"), name + " forward");
  y.backward(f.get(name + ".dy"));
  expect_close(x.grad(), f.get(name + ".dx"), name + " input gradient");
  expect_close(w.grad(), f.get(name + ".dw"), name + " weight gradient");
  if (bias) expect_close(b.grad(), f.get(name + ".db"), name + " bias gradient");
}

void check_batchnorm(const std::string& name) {
  const Fixtures& f = fixtures();
  Variable x = param(f.get(name + ".x")), gamma = param(f.get(name + ".gamma")), beta = param(f.get(name + ".beta"));
  Tensor rm = f.get(name + ".running_mean_in"), rv = f.get(name + ".running_var_in");
  // The backend primitive: output, saved statistics and the running-statistics update.
  Tensor y = Tensor::empty_like(x.value()), mean = Tensor::empty_like(rm), invstd = Tensor::empty_like(rm);
  Tensor rm1 = rm.clone(), rv1 = rv.clone();
  backend(Device::cpu()).batchnorm_forward_train(x.value(), gamma.value(), beta.value(), y, mean, invstd, rm1, rv1, {});
  expect_close(mean, f.get(name + ".save_mean"), name + " saved mean");
  expect_close(invstd, f.get(name + ".save_invstd"), name + " saved invstd");
  // The autograd function (training): the same forward, gradients and running statistics.
  Variable out = ag::batchnorm(x, gamma, beta, rm, rv, true);
  expect_close(out.value(), f.get(name + ".y"), name + " training forward");
  expect_close(rm, f.get(name + ".running_mean_out"), name + " running mean");
  expect_close(rv, f.get(name + ".running_var_out"), name + " running var (unbiased)");
  expect_close(rm1, rm, name + " running mean (primitive)");
  expect_close(rv1, rv, name + " running var (primitive)");
  out.backward(f.get(name + ".dy"));
  expect_close(x.grad(), f.get(name + ".dx"), name + " input gradient");
  expect_close(gamma.grad(), f.get(name + ".dgamma"), name + " gamma gradient");
  expect_close(beta.grad(), f.get(name + ".dbeta"), name + " beta gradient");
  // Eval mode with the updated running statistics.
  expect_close(ag::batchnorm(x, gamma, beta, rm, rv, false).value(), f.get(name + ".y_eval"), name + " eval forward");
}

Tensor random_tensor(const Shape& shape, uint64_t seed, DType dtype = DType::F64) {
  Rng rng(seed);
  std::vector<double> v(size_t(numel(shape)));
  for (double& x : v) x = rng.uniform(-1.0, 1.0);
  return Tensor::from_vector(v, shape).to(dtype);
}

// max |a - b| / max |b|, in double.
double relative_error(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to(DType::F64).to_vector<double>(), y = b.to(DType::F64).to_vector<double>();
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    num = std::max(num, std::fabs(x[i] - y[i]));
    den = std::max(den, std::fabs(y[i]));
  }
  return num / std::max(den, 1e-300);
}
}  // namespace

TEST(KnownAnswers, Conv3x3x3WithBiasMatchesPyTorch) { check_conv("conv3", 1, true); }
TEST(KnownAnswers, Conv3x3x3WithoutBiasMatchesPyTorch) { check_conv("conv3_nobias", 1, false); }
TEST(KnownAnswers, Conv1x1x1MatchesPyTorch) { check_conv("conv1", 0, true); }

TEST(KnownAnswers, MaxPoolCeilModeOddSizesMatchesPyTorch) {
  const Fixtures& f = fixtures();
  Variable x = param(f.get("maxpool_odd.x"));
  const Tensor want_y = f.get("maxpool_odd.y");
  Tensor y = Tensor::empty_like(want_y), idx = Tensor::empty(want_y.shape(), DType::I32);
  backend(Device::cpu()).maxpool2_forward(x.value(), y, idx);
  expect_close(y, want_y, "max-pool forward");
  expect_close(idx.to(DType::F64), f.get("maxpool_odd.idx"), "max-pool indices", 0.0);
  Variable out = ag::maxpool2(x);
  out.backward(f.get("maxpool_odd.dy"));
  expect_close(x.grad(), f.get("maxpool_odd.dx"), "max-pool input gradient");
}

TEST(KnownAnswers, NearestUpsampleMatchesPyTorch) {
  const Fixtures& f = fixtures();
  Variable x = param(f.get("upsample.x"));
  Variable y = ag::upsample2(x);
  expect_close(y.value(), f.get("upsample.y"), "upsample forward");
  y.backward(f.get("upsample.dy"));
  expect_close(x.grad(), f.get("upsample.dx"), "upsample input gradient");
}

TEST(KnownAnswers, BatchNorm3dMatchesPyTorch) { check_batchnorm("bn3d"); }
TEST(KnownAnswers, BatchNorm1dMatchesPyTorch) { check_batchnorm("bn1d"); }

TEST(ConvConsistency, Float32MatchesFloat64) {
  const Tensor x = random_tensor({2, 8, 9, 10, 7}, 1), w = random_tensor({6, 8, 3, 3, 3}, 2),
               b = random_tensor({6}, 3), dy = random_tensor({2, 6, 9, 10, 7}, 4);
  Variable x64(x, true), w64(w, true), b64(b, true);
  Variable x32(x.to(DType::F32), true), w32(w.to(DType::F32), true), b32(b.to(DType::F32), true);
  Variable y64 = ag::conv3d(x64, w64, b64, 1), y32 = ag::conv3d(x32, w32, b32, 1);
  y64.backward(dy);
  y32.backward(dy.to(DType::F32));
  const double errs[4] = {relative_error(y32.value(), y64.value()), relative_error(x32.grad(), x64.grad()),
                          relative_error(w32.grad(), w64.grad()), relative_error(b32.grad(), b64.grad())};
  const char* what[4] = {"forward", "input gradient", "weight gradient", "bias gradient"};
  for (int i = 0; i < 4; ++i) {
    std::printf("float32 vs float64 conv %s: relative error %.3g\n", what[i], errs[i]);
    EXPECT_LT(errs[i], 1e-5) << what[i];
  }
}

namespace {
// x [N,16,9,64,64] with a 3x3x3 kernel needs 3 slabs of 3 planes in conv3d.cpp's 2^23-element column
// buffer; forward and data gradient are compared with direct sums at sampled voxels, the filter gradient
// everywhere.
void check_against_direct_sum(int64_t N) {
  const int64_t Ci = 16, Co = 2, X = 9, Y = 64, Z = 64, S = X * Y * Z;
  const Tensor x = random_tensor({N, Ci, X, Y, Z}, 10 + uint64_t(N)), w = random_tensor({Co, Ci, 3, 3, 3}, 11);
  const Tensor dy = random_tensor({N, Co, X, Y, Z}, 12);
  Tensor y = Tensor::empty_like(dy), dx = Tensor::empty_like(x), dw = Tensor::empty_like(w);
  Backend& be = backend(Device::cpu());
  be.conv3d_forward(x, w, Tensor(), y, {1});
  be.conv3d_backward_data(dy, w, dx, {1});
  be.conv3d_backward_filter(x, dy, dw, {1});
  const double *px = x.data<double>(), *pw = w.data<double>(), *pdy = dy.data<double>();
  const double *py = y.data<double>(), *pdx = dx.data<double>(), *pdw = dw.data<double>();
  auto inside = [&](int64_t i, int64_t j, int64_t k) { return i >= 0 && i < X && j >= 0 && j < Y && k >= 0 && k < Z; };
  auto at = [&](int64_t i, int64_t j, int64_t k) { return (i * Y + j) * Z + k; };
  Rng rng(99);
  double worst = 0;
  for (int s = 0; s < 300; ++s) {
    const int64_t n = rng.randint(0, N), c = rng.randint(0, Co), ci = rng.randint(0, Ci);
    // Plane x = 0, 2, 3, 8 touch slab borders and the volume border; others are random.
    const int64_t i = s % 4 == 0 ? std::array<int64_t, 4>{0, 2, 3, 8}[size_t(s / 4 % 4)] : rng.randint(0, X);
    const int64_t j = s % 3 == 0 ? 0 : rng.randint(0, Y), k = s % 5 == 0 ? Z - 1 : rng.randint(0, Z);
    double fwd = 0, bwd = 0;
    for (int64_t cc = 0; cc < Ci; ++cc)
      for (int64_t a = 0; a < 3; ++a)
        for (int64_t b = 0; b < 3; ++b)
          for (int64_t d = 0; d < 3; ++d) {
            if (inside(i + a - 1, j + b - 1, k + d - 1))
              fwd += pw[(((c * Ci + cc) * 3 + a) * 3 + b) * 3 + d] * px[(n * Ci + cc) * S + at(i + a - 1, j + b - 1, k + d - 1)];
          }
    for (int64_t co = 0; co < Co; ++co)
      for (int64_t a = 0; a < 3; ++a)
        for (int64_t b = 0; b < 3; ++b)
          for (int64_t d = 0; d < 3; ++d) {
            if (inside(i - a + 1, j - b + 1, k - d + 1))
              bwd += pw[(((co * Ci + ci) * 3 + a) * 3 + b) * 3 + d] * pdy[(n * Co + co) * S + at(i - a + 1, j - b + 1, k - d + 1)];
          }
    worst = std::max({worst, std::fabs(fwd - py[(n * Co + c) * S + at(i, j, k)]),
                      std::fabs(bwd - pdx[(n * Ci + ci) * S + at(i, j, k)])});
  }
  EXPECT_LT(worst, 1e-11) << "forward / data gradient vs direct sums, N = " << N;
  double worst_w = 0;
  for (int64_t co = 0; co < Co; ++co)
    for (int64_t ci = 0; ci < Ci; ++ci)
      for (int64_t a = 0; a < 3; ++a)
        for (int64_t b = 0; b < 3; ++b)
          for (int64_t d = 0; d < 3; ++d) {
            double s = 0;
            for (int64_t n = 0; n < N; ++n)
              for (int64_t i = std::max<int64_t>(0, 1 - a); i < std::min(X, X + 1 - a); ++i)
                for (int64_t j = std::max<int64_t>(0, 1 - b); j < std::min(Y, Y + 1 - b); ++j)
                  for (int64_t k = std::max<int64_t>(0, 1 - d); k < std::min(Z, Z + 1 - d); ++k)
                    s += pdy[(n * Co + co) * S + at(i, j, k)] * px[(n * Ci + ci) * S + at(i + a - 1, j + b - 1, k + d - 1)];
            worst_w = std::max(worst_w, std::fabs(s - pdw[(((co * Ci + ci) * 3 + a) * 3 + b) * 3 + d]) / std::max(1.0, std::fabs(s)));
          }
  EXPECT_LT(worst_w, 1e-11) << "filter gradient vs direct sums, N = " << N;
}
}  // namespace

TEST(ConvConsistency, SlabbedSingleSampleMatchesDirectSum) { check_against_direct_sum(1); }
TEST(ConvConsistency, SlabbedBatchMatchesDirectSum) { check_against_direct_sum(2); }

TEST(ConvConsistency, SameBitsForAnyThreadCount) {
  // Work is split so that every output element is summed in the same order whatever the thread count.
  const Tensor x = random_tensor({2, 5, 7, 6, 9}, 20, DType::F32), w = random_tensor({4, 5, 3, 3, 3}, 21, DType::F32);
  const Tensor dy = random_tensor({2, 4, 7, 6, 9}, 22, DType::F32);
  auto run = [&](int threads) {
    const int before = omp_get_max_threads();
    omp_set_num_threads(threads);
    Tensor y = Tensor::empty_like(dy), dx = Tensor::empty_like(x), dw = Tensor::empty_like(w);
    Backend& be = backend(Device::cpu());
    be.conv3d_forward(x, w, Tensor(), y, {1});
    be.conv3d_backward_data(dy, w, dx, {1});
    be.conv3d_backward_filter(x, dy, dw, {1});
    omp_set_num_threads(before);
    return std::vector<std::vector<float>>{y.to_vector<float>(), dx.to_vector<float>(), dw.to_vector<float>()};
  };
  const auto one = run(1), three = run(3);
  EXPECT_EQ(one[0], three[0]) << "forward";
  EXPECT_EQ(one[1], three[1]) << "data gradient";
  EXPECT_EQ(one[2], three[2]) << "filter gradient";
}
