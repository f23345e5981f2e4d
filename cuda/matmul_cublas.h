// Row-major GEMM through cuBLAS (column-major): C = alpha op(A) op(B) + beta C is computed as
// C^T = alpha op(B)^T op(A)^T + beta C^T, which is the same memory, by swapping the operands.
#pragma once
#include <cstdint>

#include "engine/tensor.h"

namespace hdssl::cuda {

// A, B, C row-major with row strides lda, ldb, ldc; op(A) is M x K, op(B) is K x N, C is M x N.
// Queued on the context's stream; beta == 0 never reads C. T = float, double, or bf16 (float32
// accumulation, alpha and beta rounded to float).
template <class T>
void gemm_rowmajor(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const T* A,
                   int64_t lda, const T* B, int64_t ldb, double beta, T* C, int64_t ldc);

// The backend's matmul: out = alpha op(a) @ op(b) + beta out on 2D tensors.
void matmul(const Tensor& a, const Tensor& b, Tensor& out, bool trans_a, bool trans_b, double alpha, double beta);

}  // namespace hdssl::cuda
