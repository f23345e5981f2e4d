// bfloat16: cublasGemmEx with A, B, C in CUDA_R_16BF and CUBLAS_COMPUTE_32F (products and sums in
// float32, tensor cores under the context's CUBLAS_DEFAULT_MATH, C rounded to bf16 once at the end: the
// context also sets CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION, without which a split-K GEMM may add
// its partial sums in bf16, cuda/context.cpp); alpha and beta are float, as GemmEx wants for a 32F compute
// type.
#include "cuda/matmul_cublas.h"

#include <algorithm>

#include "cuda/check.h"
#include "cuda/context.h"

namespace hdssl::cuda {
namespace {
int as_int(int64_t v, const char* what) {
  HDSSL_CHECK(v >= 0 && v < (int64_t(1) << 31)) << "cuBLAS: " << what << " = " << v << " exceeds int range";
  return int(v);
}
cublasStatus_t gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                    const float* alpha, const float* A, int lda, const float* B, int ldb, const float* beta, float* C,
                    int ldc) {
  return cublasSgemm(h, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
cublasStatus_t gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                    const double* alpha, const double* A, int lda, const double* B, int ldb, const double* beta,
                    double* C, int ldc) {
  return cublasDgemm(h, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
cublasStatus_t gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                    const float* alpha, const bf16* A, int lda, const bf16* B, int ldb, const float* beta, bf16* C,
                    int ldc) {
  return cublasGemmEx(h, ta, tb, m, n, k, alpha, A, CUDA_R_16BF, lda, B, CUDA_R_16BF, ldb, beta, C, CUDA_R_16BF, ldc,
                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}
// The type of alpha and beta: T, or float for bfloat16.
template <class T> struct ScalarOf { using type = T; };
template <> struct ScalarOf<bf16> { using type = float; };
int64_t ld(const Tensor& t) { return std::max<int64_t>(1, t.size(1)); }  // cuBLAS wants ld >= 1
}  // namespace

template <class T>
void gemm_rowmajor(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const T* A,
                   int64_t lda, const T* B, int64_t ldb, double beta, T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  using S = typename ScalarOf<T>::type;
  const S al = S(alpha), be = S(beta);
  // Column-major view: C^T [N x M] = op(B)^T [N x K] * op(A)^T [K x M].
  cublasCheck(gemm(ctx().cublas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                   as_int(N, "N"), as_int(M, "M"), as_int(K, "K"), &al, B, as_int(ldb, "ldb"), A,
                   as_int(lda, "lda"), &be, C, as_int(ldc, "ldc")));
}
template void gemm_rowmajor<float>(bool, bool, int64_t, int64_t, int64_t, double, const float*, int64_t,
                                   const float*, int64_t, double, float*, int64_t);
template void gemm_rowmajor<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t,
                                    const double*, int64_t, double, double*, int64_t);
template void gemm_rowmajor<bf16>(bool, bool, int64_t, int64_t, int64_t, double, const bf16*, int64_t, const bf16*,
                                  int64_t, double, bf16*, int64_t);

void matmul(const Tensor& a, const Tensor& b, Tensor& out, bool trans_a, bool trans_b, double alpha, double beta) {
  // Shapes and dtypes arrive checked by the engine's dispatch (engine/dispatch.cpp).
  const int64_t M = trans_a ? a.size(1) : a.size(0), K = trans_a ? a.size(0) : a.size(1);
  const int64_t N = trans_b ? b.size(0) : b.size(1);
  if (a.dtype() == DType::F32)
    gemm_rowmajor<float>(trans_a, trans_b, M, N, K, alpha, a.data<float>(), ld(a), b.data<float>(), ld(b),
                         beta, out.data<float>(), std::max<int64_t>(1, N));
  else if (a.dtype() == DType::F64)
    gemm_rowmajor<double>(trans_a, trans_b, M, N, K, alpha, a.data<double>(), ld(a), b.data<double>(),
                          ld(b), beta, out.data<double>(), std::max<int64_t>(1, N));
  else if (a.dtype() == DType::BF16)
    gemm_rowmajor<bf16>(trans_a, trans_b, M, N, K, alpha, a.data<bf16>(), ld(a), b.data<bf16>(), ld(b), beta,
                        out.data<bf16>(), std::max<int64_t>(1, N));
  else
    HDSSL_CHECK(false) << "matmul: float32, float64 or bfloat16 expected, got "
                       << a.describe();  // the dispatch refused it
}

}  // namespace hdssl::cuda
