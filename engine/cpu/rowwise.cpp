// Row-wise ops on [N,D]: L2 normalisation (PyTorch F.normalize) and a stable log-sum-exp.
//
// l2norm saves norms[i] = max(|x_i|, eps), the divisor actually used, so the backward needs no eps:
//   unclamped row (|x| >= eps): y = x/|x|,  dx = (dy - y (y.dy)) / |x|   (|y| = 1)
//   clamped row   (|x| <  eps): y = x/eps,  dx = dy / eps                 (|y| = |x|/eps < 1)
// The backward tells the two apart by |y|^2: it is 1 up to rounding for an unclamped row. Rows with
// |x| within 1e-4 relative below eps (where the true gradient jumps anyway) count as unclamped.
// logsumexp subtracts the row maximum before exponentiating; its backward is dout * exp(x - out), the
// softmax recomputed from the saved output. Row sums accumulate in double.
#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/cpu/cpu_backend.h"

namespace hdssl {
namespace {
constexpr double kUnitTolerance = 1e-4;  // |y|^2 >= 1 - this: the row was divided by its own norm
}  // namespace

void CpuBackend::l2norm_forward(const Tensor& x, Tensor& y, Tensor& norms, double eps) {
  dispatch_float(x.dtype(), "l2norm_forward", [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.data<T>(); T* py = y.data<T>(); T* pn = norms.data<T>();
    const int64_t N = x.size(0), D = x.size(1);
#pragma omp parallel for schedule(static) if (N * D > 65536)
    for (int64_t i = 0; i < N; ++i) {
      const T* xi = px + i * D;
      double ss = 0;
      for (int64_t j = 0; j < D; ++j) ss += double(xi[j]) * double(xi[j]);
      const double n = std::max(std::sqrt(ss), eps);
      for (int64_t j = 0; j < D; ++j) py[i * D + j] = T(double(xi[j]) / n);
      pn[i] = T(n);
    }
  });
}

void CpuBackend::l2norm_backward(const Tensor& dy, const Tensor& y, const Tensor& norms, Tensor& dx) {
  dispatch_float(y.dtype(), "l2norm_backward", [&](auto tag) {
    using T = decltype(tag);
    const T* pdy = dy.data<T>(); const T* py = y.data<T>(); const T* pn = norms.data<T>(); T* pdx = dx.data<T>();
    const int64_t N = y.size(0), D = y.size(1);
#pragma omp parallel for schedule(static) if (N * D > 65536)
    for (int64_t i = 0; i < N; ++i) {
      const T* yi = py + i * D; const T* gi = pdy + i * D;
      double yy = 0, yg = 0;
      for (int64_t j = 0; j < D; ++j) { yy += double(yi[j]) * yi[j]; yg += double(yi[j]) * gi[j]; }
      const double inv = 1.0 / double(pn[i]);
      if (yy < 1.0 - kUnitTolerance) yg = 0;  // clamped row: y = x / eps is linear in x
      for (int64_t j = 0; j < D; ++j) pdx[i * D + j] = T((double(gi[j]) - double(yi[j]) * yg) * inv);
    }
  });
}

void CpuBackend::logsumexp_rows(const Tensor& x, Tensor& out) {
  dispatch_float(x.dtype(), "logsumexp_rows", [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.data<T>(); T* po = out.data<T>();
    const int64_t N = x.size(0), M = x.size(1);
#pragma omp parallel for schedule(static) if (N * M > 65536)
    for (int64_t i = 0; i < N; ++i) {
      const T* xi = px + i * M;
      double m = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < M; ++j) m = std::max(m, double(xi[j]));
      if (std::isinf(m)) { po[i] = T(m); continue; }  // empty row, all -inf, or a +inf entry
      double s = 0;
      for (int64_t j = 0; j < M; ++j) s += std::exp(double(xi[j]) - m);
      po[i] = T(m + std::log(s));
    }
  });
}

void CpuBackend::logsumexp_rows_backward(const Tensor& x, const Tensor& out, const Tensor& dout, Tensor& dx) {
  dispatch_float(x.dtype(), "logsumexp_rows_backward", [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.data<T>(); const T* po = out.data<T>(); const T* pg = dout.data<T>(); T* pdx = dx.data<T>();
    const int64_t N = x.size(0), M = x.size(1);
#pragma omp parallel for schedule(static) if (N * M > 65536)
    for (int64_t i = 0; i < N; ++i) {
      const double lse = double(po[i]), g = double(pg[i]);
      for (int64_t j = 0; j < M; ++j)  // a row of -inf has softmax 0 (exp(-inf - -inf) would be NaN)
        pdx[i * M + j] = std::isinf(lse) && lse < 0 ? T(0) : T(g * std::exp(double(px[i * M + j]) - lse));
    }
  });
}

}  // namespace hdssl
