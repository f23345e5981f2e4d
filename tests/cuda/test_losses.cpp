// Parity of MSE, BCE with logits and soft Dice, forward (a mean as [1]) and backward with an upstream
// gradient that is not 1 (cuda/kernels/losses.cu). Sums in double on both sides.
#include "tests/cuda/parity.h"

namespace hdssl::test {
namespace {

const std::vector<Shape> kShapes = {{1}, {2, 3, 5, 7, 3}, {2, 1, 33, 17, 9}, {4194319}};

TEST(CudaLosses, MseForwardBackward) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(90);
  for (DType t : kFloatTypes)
    for (const Shape& s : kShapes) {
      Tensor x = random(s, t, rng), target = random(s, t, rng, 0, 1);
      expect_parity([&](Device d) {
        Tensor loss = output({1}, t, d), dx = output(s, t, d);
        backend(d).mse_forward(on(d, x), on(d, target), loss);
        backend(d).mse_backward(on(d, x), on(d, target), Tensor::full({1}, 10.0, t, d), dx);
        return std::vector<Tensor>{loss, dx};
      }, {tol(t, 1e-7, 1e-6, 1e-15, 1e-12)}, "mse " + name(t, s));
    }
}

TEST(CudaLosses, BceWithLogitsForwardBackward) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(91);
  for (DType t : kFloatTypes)
    for (const Shape& s : kShapes) {
      Tensor x = random(s, t, rng, -40, 40), target = random_int(s, rng, 0, 2).to(t);
      expect_parity([&](Device d) {
        Tensor loss = output({1}, t, d), dx = output(s, t, d);
        backend(d).bce_logits_forward(on(d, x), on(d, target), loss);
        backend(d).bce_logits_backward(on(d, x), on(d, target), Tensor::full({1}, 0.5, t, d), dx);
        return std::vector<Tensor>{loss, dx};
      }, {tol(t, 1e-6, 1e-6, 1e-13, 1e-12), tol(t, 1e-9, 1e-5, 1e-18, 1e-12)}, "bce " + name(t, s));
    }
}

TEST(CudaLosses, SoftDiceForwardBackward) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(92);
  for (DType t : kFloatTypes)
    for (const Shape& s : std::vector<Shape>{{1, 1, 1}, {2, 3, 5, 7, 3}, {7, 14, 16, 16, 8}, {1, 2, 64, 64, 32}}) {
      Tensor p = random(s, t, rng, 0, 1), g = random_int(s, rng, 0, 2).to(t);
      const int64_t NK = s[0] * s[1];
      expect_parity([&](Device d) {
        Tensor loss = output({1}, t, d), sums = output({NK, 3}, t, d), dp = output(s, t, d);
        backend(d).soft_dice_forward(on(d, p), on(d, g), loss, sums);
        backend(d).soft_dice_backward(on(d, p), on(d, g), sums, Tensor::full({1}, 2.0, t, d), dp);
        return std::vector<Tensor>{loss, sums, dp};
      }, {tol(t, 1e-6, 1e-6, 1e-14, 1e-12), tol(t, 1e-3, 1e-6, 1e-10, 1e-12), tol(t, 1e-9, 1e-5, 1e-18, 1e-11)},
         "soft_dice " + name(t, s));
    }
}

}  // namespace
}  // namespace hdssl::test
