// Parity of the Adam step (cuda/kernels/adam.cu): five steps in a row with a gradient scale (gradient-norm
// clipping folded in), parameters and both moments compared. Same operation order in T on both sides and
// the GPU's sqrt and division are correctly rounded, but nvcc contracts a*b + c into one FMA (its default
// -fmad=true: m*b1 + g*(1-b1), v*b2 + ..., p -= step*q) where the CPU build (x86-64-v2, no FMA) rounds the
// product first, so float32 matches to a few ulps, not bit for bit. Also: the step number counted on the
// device, and clip_scale's non-finite sums (bit for bit: one thread in double, no contraction possible).
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

// The step between log steps (models::PretrainStep): the clip factor computed on the device from a sum of
// squares (clip_scale, in double on both sides: exact), then Adam reading it from device memory.
TEST(CudaAdam, DeviceClipFactorThenAdam) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(101);
  for (DType t : kFloatTypes)
    for (const Shape& s : std::vector<Shape>{{1}, {3, 3, 3, 3, 3}, {1000003}}) {
      Tensor p0 = random(s, t, rng);
      std::vector<Tensor> grads;
      for (int i = 0; i < 3; ++i) grads.push_back(random(s, t, rng, -1e-2, 1e-2));
      expect_parity([&](Device d) {
        Tensor p = on(d, p0), m = Tensor::zeros(s, t, d), v = Tensor::zeros(s, t, d);
        std::vector<Tensor> scales;
        AdamArgs a;
        for (int i = 0; i < 3; ++i) {
          Tensor g = on(d, grads[size_t(i)]), sum = Tensor::zeros({1}, t, d), scale = Tensor::empty({1}, t, d);
          backend(d).sum_squares(g, sum);
          backend(d).clip_scale(sum, i == 2 ? 1e3 : 0.05, 1e-6, scale);  // clipping active, then not
          a.step = i + 1;
          backend(d).adam_step(p, g, m, v, a, 1.0, scale);
          scales.push_back(scale);
        }
        return std::vector<Tensor>{p, m, v, scales[0], scales[1], scales[2]};
      }, {tol(t, 1e-7, 1e-6, 1e-15, 1e-13)}, "clip+adam " + name(t, s));
    }
}

// The step number counted on the device (models::PretrainStep, captured steps): adam_step advances the
// float64 counter, then takes the bias corrections from it (CUDA: device pow, which may differ from glibc's
// in the last bit of the double; the tolerance is the host-step test's). Starts at 3 (a resumed run), so
// steps 4..8; the counter ends at exactly 8 on both; an empty parameter still advances its counter; and on
// each backend the result is within the same tolerance of the host-step path.
TEST(CudaAdam, StepCountOnTheDevice) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(102);
  for (DType t : kFloatTypes)
    for (const Shape& s : std::vector<Shape>{{0}, {1}, {3, 3, 3, 3, 3}, {1000003}}) {
      Tensor p0 = random(s, t, rng), m0 = random(s, t, rng, -1e-3, 1e-3), v0 = random(s, t, rng, 0.0, 1e-6);
      std::vector<Tensor> grads;
      for (int i = 0; i < 5; ++i) grads.push_back(random(s, t, rng, -1e-2, 1e-2));
      auto run = [&](Device d, bool counted) {
        Tensor p = on(d, p0), m = on(d, m0), v = on(d, v0), count = Tensor::full({1}, 3.0, DType::F64, d);
        AdamArgs a;
        for (int i = 0; i < 5; ++i) {
          a.step = 4 + i;
          backend(d).adam_step(p, on(d, grads[size_t(i)]), m, v, a, i % 2 ? 0.5 : 1.0, Tensor(),
                               counted ? count : Tensor());
        }
        return std::vector<Tensor>{p, m, v, count};
      };
      const Tol tl = tol(t, 1e-7, 1e-6, 1e-15, 1e-13);
      expect_parity([&](Device d) { return run(d, true); }, {tl}, "counted adam " + name(t, s));
      const std::vector<Tensor> counted = run(gpu(), true), host = run(gpu(), false);
      EXPECT_EQ(counted[3].to(Device::cpu()).to_vector<double>(), std::vector<double>{8.0}) << name(t, s);
      for (size_t k = 0; k < 3; ++k)
        EXPECT_TRUE(close(host[k], counted[k], tl)) << "counted vs host step " << name(t, s) << ", output " << k;
    }
}

TEST(CudaAdam, ClipScaleOfNonFiniteSums) {
  HDSSL_REQUIRE_CUDA();
  for (DType t : kFloatTypes)
    expect_parity([&](Device d) {
      std::vector<Tensor> out;
      for (double sum : {0.0, 1e30, double(INFINITY), double(NAN)}) {
        Tensor s = Tensor::full({1}, sum, t, d), scale = Tensor::empty({1}, t, d);
        backend(d).clip_scale(s, 1.0, 1e-6, scale);
        out.push_back(scale);
      }
      return out;
    }, {Tol{0, 0}}, std::string("clip_scale ") + dtype_name(t));
}

}  // namespace
}  // namespace hdssl::test
