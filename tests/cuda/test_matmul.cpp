// Parity of the cuBLAS row-major GEMM (cuda/matmul_cublas.cpp): all four transpose combinations, alpha,
// beta != 0 (accumulate), odd sizes. TF32 off; float32 differs by summation order over K terms.
#include "tests/cuda/parity.h"

namespace hdssl::test {
namespace {

TEST(CudaMatmul, AllTransposesAlphaBeta) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(50);
  struct Mnk { int64_t m, n, k; };
  for (DType t : kFloatTypes)
    for (Mnk s : std::vector<Mnk>{{1, 1, 1}, {3, 5, 7}, {17, 1, 33}, {160, 160, 1025}, {1024, 128, 160}})
      for (bool ta : {false, true})
        for (bool tb : {false, true})
          for (double beta : {0.0, 0.5}) {
            Tensor a = random(ta ? Shape{s.k, s.m} : Shape{s.m, s.k}, t, rng);
            Tensor b = random(tb ? Shape{s.n, s.k} : Shape{s.k, s.n}, t, rng);
            Tensor c0 = random({s.m, s.n}, t, rng);
            const double K = double(s.k);
            expect_parity([&](Device d) {
              Tensor out = beta == 0.0 ? output({s.m, s.n}, t, d) : on(d, c0);  // beta 0 never reads out (NaN)
              backend(d).matmul(on(d, a), on(d, b), out, ta, tb, 1.5, beta);
              return std::vector<Tensor>{out};
            }, {tol(t, 2e-7 * K, 1e-5, 1e-14 * K, 1e-12)},
               "matmul " + std::to_string(s.m) + "x" + std::to_string(s.n) + "x" + std::to_string(s.k) +
                   (ta ? " A^T" : "") + (tb ? " B^T" : "") + " beta " + std::to_string(beta) + " " + dtype_name(t));
          }
}

}  // namespace
}  // namespace hdssl::test
