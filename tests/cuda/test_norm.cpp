// Parity of batch normalization (cuda/kernels/norm.cu): training forward (y, saved mean and invstd,
// running statistics updated in place), eval forward, and the training backward (dx, dgamma, dbeta),
// on 5D volumes and 2D [N, C] rows (the projection head's BN1d). Both backends accumulate in double
// (CPU: two passes; CUDA: one shifted pass), so float32 differs by roundings of O(1) values. Also: a
// channel holding a NaN or an infinity gives the CPU's NaN statistics, and empty tensors (no channels, or
// no values per channel) give the CPU's results instead of a crash.
#include "tests/cuda/parity.h"

#include <cmath>
#include <limits>

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

// |cuda - cpu| within tl where the CPU's value is a number; NaN exactly where the CPU has NaN (close() never
// passes a NaN, and these are the places where a NaN is the right answer).
::testing::AssertionResult close_or_both_nan(const Tensor& cpu, const Tensor& cuda, Tol tl) {
  const auto a = host_doubles(cpu), b = host_doubles(cuda);
  if (a.size() != b.size()) return ::testing::AssertionFailure() << cpu.describe() << " vs " << cuda.describe();
  for (size_t i = 0; i < a.size(); ++i) {
    const bool ok = std::isnan(a[i]) ? std::isnan(b[i])
                    : std::isinf(a[i]) ? a[i] == b[i]
                                       : std::fabs(a[i] - b[i]) <= tl.atol + tl.rtol * std::fabs(a[i]);
    if (!ok) return ::testing::AssertionFailure() << "flat index " << i << ": cpu " << a[i] << " cuda " << b[i];
  }
  return ::testing::AssertionSuccess();
}

// A channel holding a NaN, one holding +inf (not its first value: the CUDA statistics shift by the first
// value), one finite: the CPU's two-pass variance is NaN for the first two, so mean/invstd/running_var and
// y are NaN (running_mean +inf for the second), and CUDA must agree (its one-pass variance is clamped at 0,
// which must let the NaN through). Plain and fused (+ residual) batch norm share the statistics kernels.
TEST(CudaBatchNorm, NonFiniteChannelGivesTheCpusNaNStatistics) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(43);
  const BatchNormArgs a;
  for (DType t : kFloatTypes)
    for (bool fused : {false, true}) {
      const Shape s = {4, 3, 2, 2, 2};
      std::vector<double> xv(size_t(numel(s)));
      for (double& v : xv) v = rng.uniform(2.0, 5.0);
      xv[size_t(0 * 3 + 0) * 8 + 5] = std::numeric_limits<double>::quiet_NaN();  // n 0, channel 0
      xv[size_t(2 * 3 + 1) * 8 + 3] = std::numeric_limits<double>::infinity();   // n 2, channel 1
      const Tensor x = Tensor::from_vector(xv, s).to(t), gamma = random({3}, t, rng, 0.5, 1.5),
                   beta = random({3}, t, rng), r = random(s, t, rng), rm = random({3}, t, rng),
                   rv = random({3}, t, rng, 0.5, 2.0);
      auto run = [&](Device d) {
        Backend& b = backend(d);
        Tensor y = output(s, t, d), mean = output({3}, t, d), invstd = output({3}, t, d);
        Tensor run_mean = on(d, rm), run_var = on(d, rv);
        if (fused)
          b.batchnorm_relu_forward_train(on(d, x), on(d, gamma), on(d, beta), on(d, r), y, mean, invstd, run_mean,
                                         run_var, a);
        else
          b.batchnorm_forward_train(on(d, x), on(d, gamma), on(d, beta), y, mean, invstd, run_mean, run_var, a);
        return std::vector<Tensor>{y, mean, invstd, run_mean, run_var};
      };
      const std::vector<Tensor> want = run(Device::cpu()), got = run(gpu());
      const std::vector<double> cpu_invstd = host_doubles(want[2]);
      ASSERT_TRUE(std::isnan(cpu_invstd[0]) && std::isnan(cpu_invstd[1]) && !std::isnan(cpu_invstd[2]))
          << "the CPU reference itself";
      for (size_t k = 0; k < want.size(); ++k)
        EXPECT_TRUE(close_or_both_nan(want[k], got[k], tol(t, 2e-5, 2e-5, 1e-11, 1e-10)))
            << (fused ? "batchnorm_relu " : "batchnorm ") << name(t, s) << ", output " << k;
    }
}

// Empty tensors, in the eval forward and the backward (training is refused without values per channel): no
// channels (C = 0: nothing to write; CUDA divided by C when splitting channels into chunks) and no values per
// channel (N = 0: dgamma = dbeta = 0, the CPU's empty sums; CUDA refused it).
TEST(CudaBatchNorm, EmptyTensors) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(44);
  const BatchNormArgs a;
  for (DType t : kFloatTypes)
    for (const Shape& s : std::vector<Shape>{{4, 0}, {2, 0, 3, 3, 3}, {0, 3}, {0, 3, 2, 2, 2}})
      for (bool fused : {false, true}) {
        const int64_t C = s[1];
        const bool train = numel(s) > 0;  // the dispatch refuses training without values per channel
        const Tensor x = random(s, t, rng), gamma = random({C}, t, rng), beta = random({C}, t, rng),
                     r = random(s, t, rng), dy = random(s, t, rng), rm = random({C}, t, rng),
                     rv = random({C}, t, rng, 0.5, 2.0), mean = random({C}, t, rng), invstd = random({C}, t, rng);
        expect_parity([&](Device d) {
          Backend& b = backend(d);
          std::vector<Tensor> out;
          if (train) {
            Tensor y = output(s, t, d), m = output({C}, t, d), is = output({C}, t, d);
            Tensor run_mean = on(d, rm), run_var = on(d, rv);
            if (fused)
              b.batchnorm_relu_forward_train(on(d, x), on(d, gamma), on(d, beta), on(d, r), y, m, is, run_mean,
                                             run_var, a);
            else
              b.batchnorm_forward_train(on(d, x), on(d, gamma), on(d, beta), y, m, is, run_mean, run_var, a);
            out.insert(out.end(), {y, m, is, run_mean, run_var});
          }
          Tensor ye = output(s, t, d);
          if (fused)
            b.batchnorm_relu_forward_eval(on(d, x), on(d, gamma), on(d, beta), on(d, r), on(d, rm), on(d, rv), ye,
                                          a);
          else
            b.batchnorm_forward_eval(on(d, x), on(d, gamma), on(d, beta), on(d, rm), on(d, rv), ye, a);
          Tensor dx = output(s, t, d), dgamma = output({C}, t, d), dbeta = output({C}, t, d), dr = output(s, t, d);
          if (fused)
            b.batchnorm_relu_backward(on(d, x), on(d, x), on(d, dy), on(d, gamma), on(d, mean), on(d, invstd), dx,
                                      dgamma, dbeta, dr);
          else
            b.batchnorm_backward(on(d, x), on(d, dy), on(d, gamma), on(d, mean), on(d, invstd), dx, dgamma, dbeta);
          out.insert(out.end(), {ye, dx, dgamma, dbeta, dr});
          return out;
        }, {Tol{0, 0}}, std::string(fused ? "batchnorm_relu " : "batchnorm ") + name(t, s) + " (empty)");
      }
}

}  // namespace
}  // namespace hdssl::test
