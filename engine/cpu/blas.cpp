// See blas.h. The known-answer tests (tests/engine/*known_answers*) run on whichever core this selects.
#include "engine/cpu/blas.h"

#include <cblas.h>

#include <cstdlib>
#include <string>

namespace hdssl::blas {

void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, double beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, blasint(m),
              blasint(n), blasint(k), float(alpha), a, blasint(lda), b, blasint(ldb), float(beta), c, blasint(ldc));
}

void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
          const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, blasint(m),
              blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc));
}

// Weak: an OpenBLAS without DYNAMIC_ARCH lacks these, links anyway, and is left alone.
extern "C" void gotoblas_dynamic_init(void) __attribute__((weak));
extern "C" void gotoblas_dynamic_quit(void) __attribute__((weak));

const char* select_core() {
  static const bool reselected = [] {
    if (!gotoblas_dynamic_init || !gotoblas_dynamic_quit || std::getenv("OPENBLAS_CORETYPE")) return false;
    const std::string core = openblas_get_corename();
    const bool pre_avx = core == "Prescott" || core == "Core2" || core == "Penryn" || core == "Dunnington" ||
                         core == "Nehalem" || core == "Atom";
    __builtin_cpu_init();
    const char* better = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")
                             ? "SKYLAKEX"
                         : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? "HASWELL"
                                                                                          : nullptr;
    if (!pre_avx || !better) return false;
    setenv("OPENBLAS_CORETYPE", better, 0);
    gotoblas_dynamic_quit();
    gotoblas_dynamic_init();
    unsetenv("OPENBLAS_CORETYPE");
    return true;
  }();
  (void)reselected;
  return openblas_get_corename();
}

}  // namespace hdssl::blas
