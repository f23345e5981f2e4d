// Parity of batch normalization (cuda/kernels/norm.cu): training forward (y, saved mean and invstd,
// running statistics updated in place), eval forward, and the training backward (dx, dgamma, dbeta),
// on 5D volumes and 2D [N, C] rows (the projection head's BN1d). Both backends accumulate in double
// (CPU: two passes; CUDA: one shifted pass), so float32 differs by roundings of O(1) values.
#include "tests/cuda/parity.h"

namespace hdssl::test {
namespace {

const std::vector<Shape> kShapes = {{4, 3}, {2, 3, 5, 6, 7}, {1, 5, 3, 3, 3}, {7, 2, 1, 1, 2}, {3, 8, 16, 16, 8}, {2048, 160}};

TEST(CudaBatchNorm, TrainForwardEvalForwardBackward) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(40);
  for (DType t : kFloatTypes)
    for (const Shape& s : kShapes) {
      const int64_t C = s[1];
      Tensor x = random(s, t, rng, 2.0, 5.0);  // a mean far from 0, to catch cancellation in the variance
      Tensor gamma = random({C}, t, rng, 0.5, 1.5), beta = random({C}, t, rng), dy = random(s, t, rng);
      Tensor rm = random({C}, t, rng), rv = random({C}, t, rng, 0.5, 2.0);
      BatchNormArgs a;
      a.momentum = 0.1;
      a.eps = 1e-5;
      expect_parity([&](Device d) {
        Backend& b = backend(d);
        Tensor y = output(s, t, d), mean = output({C}, t, d), invstd = output({C}, t, d);
        Tensor run_mean = on(d, rm), run_var = on(d, rv);
        b.batchnorm_forward_train(on(d, x), on(d, gamma), on(d, beta), y, mean, invstd, run_mean, run_var, a);
        Tensor ye = output(s, t, d);
        b.batchnorm_forward_eval(on(d, x), on(d, gamma), on(d, beta), run_mean, run_var, ye, a);
        Tensor dx = output(s, t, d), dgamma = output({C}, t, d), dbeta = output({C}, t, d);
        b.batchnorm_backward(on(d, x), on(d, dy), on(d, gamma), mean, invstd, dx, dgamma, dbeta);
        return std::vector<Tensor>{y, mean, invstd, run_mean, run_var, ye, dx, dgamma, dbeta};
      }, {tol(t, 2e-5, 2e-5, 1e-11, 1e-10)}, "batchnorm " + name(t, s));
    }
}

}  // namespace
}  // namespace hdssl::test
