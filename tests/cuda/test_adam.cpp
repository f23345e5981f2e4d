// Parity of the Adam step (cuda/kernels/adam.cu): five steps in a row with a gradient scale (gradient-norm
// clipping folded in), parameters and both moments compared. Same operation order in T on both sides;
// the GPU's sqrt and division are correctly rounded, so float32 matches to a few ulps.
#include "tests/cuda/parity.h"

namespace hdssl::test {
namespace {

TEST(CudaAdam, FiveStepsWithGradScale) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(100);
  for (DType t : kFloatTypes)
    for (const Shape& s : std::vector<Shape>{{1}, {3, 3, 3, 3, 3}, {256, 512, 1, 1, 1}, {1000003}}) {
      Tensor p0 = random(s, t, rng);
      std::vector<Tensor> grads;
      for (int i = 0; i < 5; ++i) grads.push_back(random(s, t, rng, -1e-2, 1e-2));
      expect_parity([&](Device d) {
        Tensor p = on(d, p0), m = Tensor::zeros(s, t, d), v = Tensor::zeros(s, t, d);
        AdamArgs a;
        for (int i = 0; i < 5; ++i) {
          a.step = i + 1;
          backend(d).adam_step(p, on(d, grads[size_t(i)]), m, v, a, i % 2 ? 0.5 : 1.0);
        }
        return std::vector<Tensor>{p, m, v};
      }, {tol(t, 1e-7, 1e-6, 1e-15, 1e-13)}, "adam " + name(t, s));
    }
}

}  // namespace
}  // namespace hdssl::test
