// InfoNCE (docs/method.md section 3, step 7) against a direct reference written from the formula with plain loops:
// symmetric, positives on the diagonal of s(A,B), negatives = every other voxel of both views.
// The loss must agree, and the gradient must agree with central differences of the reference.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "autograd/functions.h"
#include "engine/random.h"

using namespace hdssl;

namespace {
using Mat = std::vector<std::vector<double>>;

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Loss_A = mean_k [ -s(A_k,B_k) + log( sum_{j!=k} exp s(A_k,A_j) + sum_j exp s(A_k,B_j) ) ], s = dot / tau;
// Loss_B likewise with the views swapped; the result is their mean.
double reference(const Mat& a, const Mat& b, double tau) {
  const size_t n = a.size();
  auto one_side = [&](const Mat& x, const Mat& y) {
    double total = 0;
    for (size_t k = 0; k < n; ++k) {
      double sum = 0;
      for (size_t j = 0; j < n; ++j) {
        if (j != k) sum += std::exp(dot(x[k], x[j]) / tau);
        sum += std::exp(dot(x[k], y[j]) / tau);
      }
      total += -dot(x[k], y[k]) / tau + std::log(sum);
    }
    return total / double(n);
  };
  return (one_side(a, b) + one_side(b, a)) / 2;
}

Mat random_unit_rows(size_t n, size_t d, Rng& rng) {
  Mat m(n, std::vector<double>(d));
  for (auto& r : m) {
    for (double& v : r) v = rng.normal();
    double s = std::sqrt(dot(r, r));
    for (double& v : r) v /= s;
  }
  return m;
}

Tensor to_tensor(const Mat& m) {
  std::vector<double> flat;
  for (auto& r : m) flat.insert(flat.end(), r.begin(), r.end());
  return Tensor::from_vector(flat, {int64_t(m.size()), int64_t(m[0].size())});
}
}  // namespace

TEST(InfoNCE, MatchesTheDirectReferenceAndItsGradient) {
  Rng rng(11);
  for (double tau : {0.1, 0.5}) {
    for (size_t n : {size_t(2), size_t(9)}) {
      const size_t d = 6;
      Mat a = random_unit_rows(n, d, rng), b = random_unit_rows(n, d, rng);
      Variable va(to_tensor(a), true), vb(to_tensor(b), true);
      Variable loss = ag::infonce(va, vb, tau);
      const double ref = reference(a, b, tau);
      EXPECT_NEAR(loss.value().item(), ref, 1e-12 * std::abs(ref)) << "tau " << tau << " n " << n;
      loss.backward();
      // central differences of the reference, every element of both inputs
      const double h = 1e-6;
      std::vector<double> ga = va.grad().to_vector<double>(), gb = vb.grad().to_vector<double>();
      for (int side = 0; side < 2; ++side) {
        Mat& m = side == 0 ? a : b;
        const std::vector<double>& g = side == 0 ? ga : gb;
        for (size_t i = 0; i < n; ++i)
          for (size_t j = 0; j < d; ++j) {
            const double keep = m[i][j];
            m[i][j] = keep + h;
            const double up = reference(a, b, tau);
            m[i][j] = keep - h;
            const double down = reference(a, b, tau);
            m[i][j] = keep;
            EXPECT_NEAR(g[i * d + j], (up - down) / (2 * h), 1e-6) << "side " << side << " element " << i << "," << j;
          }
      }
    }
  }
}

TEST(InfoNCE, PerfectlyAlignedDistinctEmbeddingsGiveALowLoss) {
  // With za = zb = the 4 axis directions, the positive is 10 above every negative at tau 0.1:
  // per side log(1 + 6 e^-10) ~ 2.7e-4 (3 in-view + 3 cross-view negatives at cosine 0).
  Mat e = {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}};
  Variable za(to_tensor(e)), zb(to_tensor(e));
  EXPECT_NEAR(ag::infonce(za, zb, 0.1).value().item(), std::log(1 + 6 * std::exp(-10.0)), 1e-12);
}
