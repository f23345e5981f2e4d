// Dense linear algebra: one OpenBLAS GEMM call and the bias add of a linear layer.
//
// Row-major GEMM maps directly onto cblas_?gemm(CblasRowMajor, ...): the leading dimension of a stored
// matrix is its number of columns whatever the transpose flag says, because op() only changes how BLAS
// walks the memory. beta = 0 follows BLAS: `out` is then not read, so it may hold garbage (or NaN).
#include "engine/cpu/blas.h"
#include "engine/cpu/cpu_backend.h"

namespace hdssl {
using blas::gemm;

void CpuBackend::matmul(const Tensor& a, const Tensor& b, Tensor& out, bool trans_a, bool trans_b, double alpha,
                        double beta) {
  HDSSL_CHECK(a.dim() == 2 && b.dim() == 2 && out.dim() == 2) << "matmul: 2D tensors expected, got "
                                                              << a.describe() << ", " << b.describe() << " -> "
                                                              << out.describe();
  HDSSL_CHECK(a.dtype() == b.dtype() && a.dtype() == out.dtype())
      << "matmul: dtypes differ: " << a.describe() << ", " << b.describe() << " -> " << out.describe();
  const int64_t M = trans_a ? a.size(1) : a.size(0), K = trans_a ? a.size(0) : a.size(1);
  const int64_t Kb = trans_b ? b.size(1) : b.size(0), N = trans_b ? b.size(0) : b.size(1);
  HDSSL_CHECK(K == Kb && out.size(0) == M && out.size(1) == N)
      << "matmul: op(a) " << M << "x" << K << " @ op(b) " << Kb << "x" << N << " -> " << out.describe();
  if (M == 0 || N == 0) return;
  if (K == 0) {  // an empty sum: out = beta * out (BLAS would read lda/ldb of 0, which it rejects)
    if (beta == 0) fill(out, 0.0);
    else axpby(beta, out, 0.0, out, out);
    return;
  }
  dispatch_float(a.dtype(), "matmul", [&](auto tag) {
    using T = decltype(tag);
    gemm(trans_a, trans_b, M, N, K, alpha, a.data<T>(), a.size(1), b.data<T>(), b.size(1), beta, out.data<T>(), N);
  });
}

void CpuBackend::add_row_vector(const Tensor& x, const Tensor& v, Tensor& out) {
  HDSSL_CHECK(x.dim() == 2 && v.dim() == 1 && v.size(0) == x.size(1) && v.dtype() == x.dtype())
      << "add_row_vector: " << x.describe() << " + " << v.describe();
  check_same(x, out, "add_row_vector");
  dispatch_float(x.dtype(), "add_row_vector", [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.data<T>(); const T* pv = v.data<T>(); T* po = out.data<T>();
    const int64_t R = x.size(0), C = x.size(1);
#pragma omp parallel for schedule(static) if (R * C > 65536)
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < C; ++c) po[r * C + c] = px[r * C + c] + pv[c];
  });
}

}  // namespace hdssl
