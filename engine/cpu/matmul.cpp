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
  const int64_t M = trans_a ? a.size(1) : a.size(0), K = trans_a ? a.size(0) : a.size(1);
  const int64_t N = trans_b ? b.size(0) : b.size(1);
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
