// The one door to OpenBLAS: row-major GEMM for float and double, and the choice of OpenBLAS's kernels.
#pragma once
#include <cstdint>

namespace hdssl::blas {

// c = alpha * op(a) @ op(b) + beta * c, row-major; op transposes when the flag is set. lda/ldb/ldc are the
// stored row lengths (number of columns as stored), whatever the transpose flags. beta = 0 never reads c.
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, double beta, float* c, int64_t ldc);
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
          const double* b, int64_t ldb, double beta, double* c, int64_t ldc);

// OpenBLAS 0.3.21 (Debian 12) does not recognise some recent CPUs and falls back to its SSE3 kernels,
// ~10x slower than its AVX-512 ones. Called once when the CPU backend is created: re-selects the core when
// the CPU has AVX-512 (or AVX2+FMA) but OpenBLAS picked a pre-AVX one. Leaves alone a core chosen by the
// user with OPENBLAS_CORETYPE and an OpenBLAS built without runtime dispatch. Returns the core in use.
const char* select_core();

}  // namespace hdssl::blas
