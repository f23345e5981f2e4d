// Parity of sum_all, sum_squares (+=) and channel_sum (cuda/kernels/reduce.cu). Both backends sum in
// double, in different orders; the float32 result differs by the final rounding plus order effects.
#include "tests/cuda/parity.h"

namespace hdssl::test {
namespace {

TEST(CudaReduce, SumAllAndSumSquaresAccumulate) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(10);
  for (DType t : kFloatTypes)
    for (const Shape& s : std::vector<Shape>{{1}, {3, 7}, {2, 3, 5, 7, 9}, {3000017}}) {
      Tensor x = random(s, t, rng);
      expect_parity([&](Device d) {
        Tensor sum = output({1}, t, d);
        Tensor sq = Tensor::full({1}, 1.5, t, d);  // sum_squares adds to what is there
        backend(d).sum_all(on(d, x), sum);
        backend(d).sum_squares(on(d, x), sq);
        backend(d).sum_squares(on(d, x), sq);  // twice: 1.5 + 2 sum(x^2)
        return std::vector<Tensor>{sum, sq};
      }, {tol(t, 1e-5, 1e-6, 1e-10, 1e-12), tol(t, 1e-5, 1e-6, 1e-10, 1e-12)}, "sum_all/sum_squares " + name(t, s));
    }
}

TEST(CudaReduce, ChannelSum) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(11);
  for (DType t : kFloatTypes)
    for (const Shape& s : std::vector<Shape>{{5, 3}, {1, 1, 1, 1, 1}, {3, 7, 5, 6, 7}, {2, 32, 40, 40, 24}, {10240, 160}}) {
      Tensor x = random(s, t, rng);
      expect_parity([&](Device d) {
        Tensor out = output({s[1]}, t, d);
        backend(d).channel_sum(on(d, x), out);
        return std::vector<Tensor>{out};
      }, {tol(t, 1e-4, 1e-6, 1e-10, 1e-12)}, "channel_sum " + name(t, s));
    }
}

}  // namespace
}  // namespace hdssl::test
