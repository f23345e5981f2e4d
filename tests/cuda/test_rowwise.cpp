// Parity of L2 normalization and the row-wise log-sum-exp, forward and backward (cuda/kernels/rowwise.cu),
// including a zero row (the eps clamp) and rows with very different magnitudes.
#include <limits>

#include "tests/cuda/parity.h"

namespace hdssl::test {
namespace {

TEST(CudaRowwise, L2NormalizeForwardBackward) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(70);
  for (DType t : kFloatTypes)
    for (Shape s : std::vector<Shape>{{1, 1}, {5, 3}, {37, 128}, {10240, 160}, {3, 1008}}) {
      Tensor x = random(s, t, rng), dy = random(s, t, rng);
      if (s[0] >= 3) {  // row 1 all zero (clamped), row 2 tiny (clamped), others unit-ish
        std::vector<double> v = x.to(DType::F64).to_vector<double>();
        for (int64_t j = 0; j < s[1]; ++j) { v[size_t(s[1] + j)] = 0.0; v[size_t(2 * s[1] + j)] *= 1e-14; }
        x = Tensor::from_vector(v, s).to(t);
      }
      expect_parity([&](Device d) {
        Tensor y = output(s, t, d), norms = output({s[0]}, t, d), dx = output(s, t, d);
        backend(d).l2norm_forward(on(d, x), y, norms, 1e-12);
        backend(d).l2norm_backward(on(d, dy), y, norms, dx);
        return std::vector<Tensor>{y, norms, dx};
      }, {tol(t, 1e-6, 1e-5, 1e-14, 1e-11), tol(t, 1e-6, 1e-6), tol(t, 1e-5, 1e-4, 1e-12, 1e-9)},
         "l2norm " + name(t, s));
    }
}

TEST(CudaRowwise, LogSumExpForwardBackward) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(71);
  for (DType t : kFloatTypes)
    for (Shape s : std::vector<Shape>{{1, 1}, {4, 7}, {33, 20480}, {1000, 3}}) {
      Tensor x = random(s, t, rng, -30, 30), dout = random({s[0]}, t, rng);
      expect_parity([&](Device d) {
        Tensor out = output({s[0]}, t, d), dx = output(s, t, d);
        backend(d).logsumexp_rows(on(d, x), out);
        backend(d).logsumexp_rows_backward(on(d, x), out, on(d, dout), dx);
        return std::vector<Tensor>{out, dx};
      }, {tol(t, 1e-5, 1e-6), tol(t, 1e-6, 1e-5)}, "logsumexp " + name(t, s));
    }
  // a row of -inf: lse -inf, gradient 0
  const double ninf = -std::numeric_limits<double>::infinity();
  Tensor x = Tensor::from_vector(std::vector<double>{ninf, ninf, 1.0, 2.0}, {2, 2});
  expect_parity([&](Device d) {
    Tensor out = output({2}, DType::F64, d), dx = output({2, 2}, DType::F64, d);
    backend(d).logsumexp_rows(on(d, x), out);
    backend(d).logsumexp_rows_backward(on(d, x), out, Tensor::full({2}, 1.0, DType::F64, d), dx);
    return std::vector<Tensor>{out, dx};
  }, {Tol{1e-15, 1e-15}}, "logsumexp -inf row");
}

}  // namespace
}  // namespace hdssl::test
