// Parity of the fused batch norm + ReLU (+ residual) (cuda/kernels/norm.cu): training forward (y, saved
// mean and invstd, running statistics updated in place), eval forward and the training backward (dx,
// dgamma, dbeta, and dr when asked), with and without the residual, on 5D volumes and 2D [N, C] rows.
// Tolerances are batch norm's (tests/cuda/test_norm.cpp): the statistics are the same double sums (CPU:
// two passes; CUDA: one shifted pass), and the ReLU and the residual add are exact given the normalized
// value. The backward takes the CPU's forward results (y, mean, invstd) as inputs on both backends, so a
// pre-activation within an ulp of 0 cannot flip the ReLU mask between them and turn a rounding into a
// difference of dy.
// Second test: on the device, the fused kernels give the bits of the unfused kernels they replace
// (batchnorm_forward_*, axpby, relu_forward; relu_backward, batchnorm_backward): the same statistics and
// finalize kernels, the value rounded to the dtype before r and the ReLU, dy masked before the moments.
// Third test: bfloat16 activations, which the dispatch widens to float32 on the device (not a native op).
#include "tests/cuda/parity.h"

#include <cstring>

namespace hdssl::test {
namespace {

// The last shape has 2^17 values per channel, so the per-channel partial sums run in many chunks.
const std::vector<Shape> kShapes = {{4, 3}, {2, 3, 5, 6, 7}, {1, 5, 3, 3, 3}, {7, 2, 1, 1, 2}, {3, 8, 16, 16, 8},
                                    {2048, 160}, {2, 2, 64, 64, 16}};

struct Inputs {
  Tensor x, gamma, beta, r, dy, rm, rv;
};
Inputs make_inputs(const Shape& s, DType t, bool residual, Rng& rng) {
  const int64_t C = s[1];
  Inputs in;
  in.x = random(s, t, rng, 2.0, 5.0);  // a mean far from 0, to catch cancellation in the variance
  in.gamma = random({C}, t, rng, 0.5, 1.5);
  in.beta = random({C}, t, rng);
  if (residual) in.r = random(s, t, rng);
  in.dy = random(s, t, rng);
  in.rm = random({C}, t, rng);
  in.rv = random({C}, t, rng, 0.5, 2.0);
  return in;
}

TEST(CudaBatchNormRelu, TrainForwardEvalForwardBackward) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(41);
  const BatchNormArgs a;  // momentum 0.1, eps 1e-5
  for (DType t : kFloatTypes)
    for (const Shape& s : kShapes)
      for (bool residual : {false, true}) {
        const int64_t C = s[1];
        const Inputs in = make_inputs(s, t, residual, rng);
        // The CPU's forward, the backward's inputs on both backends.
        Tensor y0 = output(s, t, Device::cpu()), mean0 = output({C}, t, Device::cpu()),
               invstd0 = output({C}, t, Device::cpu()), rm0 = in.rm.clone(), rv0 = in.rv.clone();
        backend(Device::cpu()).batchnorm_relu_forward_train(in.x, in.gamma, in.beta, in.r, y0, mean0, invstd0, rm0,
                                                            rv0, a);
        const std::string what = std::string("batchnorm_relu ") + name(t, s) + (residual ? " +r" : "");
        expect_parity([&](Device d) {
          Backend& b = backend(d);
          Tensor y = output(s, t, d), mean = output({C}, t, d), invstd = output({C}, t, d);
          Tensor run_mean = on(d, in.rm), run_var = on(d, in.rv);
          b.batchnorm_relu_forward_train(on(d, in.x), on(d, in.gamma), on(d, in.beta), on(d, in.r), y, mean, invstd,
                                         run_mean, run_var, a);
          Tensor ye = output(s, t, d);
          b.batchnorm_relu_forward_eval(on(d, in.x), on(d, in.gamma), on(d, in.beta), on(d, in.r), run_mean, run_var,
                                        ye, a);
          Tensor dx = output(s, t, d), dgamma = output({C}, t, d), dbeta = output({C}, t, d);
          Tensor dr = residual ? output(s, t, d) : Tensor();
          b.batchnorm_relu_backward(on(d, in.x), on(d, y0), on(d, in.dy), on(d, in.gamma), on(d, mean0),
                                    on(d, invstd0), dx, dgamma, dbeta, dr);
          std::vector<Tensor> out{y, mean, invstd, run_mean, run_var, ye, dx, dgamma, dbeta};
          if (residual) out.push_back(dr);
          return out;
        }, {tol(t, 2e-5, 2e-5, 1e-11, 1e-10)}, what);
      }
}

// Bytes of a tensor, from whichever device it is on.
std::vector<unsigned char> bytes_of(const Tensor& t) {
  const Tensor c = t.to(Device::cpu());
  std::vector<unsigned char> b(c.nbytes());
  std::memcpy(b.data(), c.raw(), c.nbytes());
  return b;
}

TEST(CudaBatchNormRelu, FusedKernelsGiveTheBitsOfTheUnfusedOnes) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(42);
  const BatchNormArgs a;
  const Device d = gpu();
  Backend& b = backend(d);
  for (DType t : kFloatTypes)
    for (const Shape& s : {Shape{2, 3, 5, 6, 7}, Shape{2048, 160}, Shape{2, 2, 64, 64, 16}})
      for (bool residual : {false, true}) {
        const int64_t C = s[1];
        const Inputs in = make_inputs(s, t, residual, rng);
        const Tensor x = on(d, in.x), gamma = on(d, in.gamma), beta = on(d, in.beta), r = on(d, in.r),
                     dy = on(d, in.dy);
        // fused
        Tensor y = output(s, t, d), mean = output({C}, t, d), invstd = output({C}, t, d);
        Tensor rm = on(d, in.rm), rv = on(d, in.rv);
        b.batchnorm_relu_forward_train(x, gamma, beta, r, y, mean, invstd, rm, rv, a);
        Tensor ye = output(s, t, d);
        b.batchnorm_relu_forward_eval(x, gamma, beta, r, rm, rv, ye, a);
        Tensor dx = output(s, t, d), dgamma = output({C}, t, d), dbeta = output({C}, t, d);
        Tensor dr = residual ? output(s, t, d) : Tensor();
        b.batchnorm_relu_backward(x, y, dy, gamma, mean, invstd, dx, dgamma, dbeta, dr);
        // unfused: bn, (+ r), relu; relu_backward, batchnorm_backward
        Tensor u = output(s, t, d), umean = output({C}, t, d), uinvstd = output({C}, t, d);
        Tensor urm = on(d, in.rm), urv = on(d, in.rv);
        b.batchnorm_forward_train(x, gamma, beta, u, umean, uinvstd, urm, urv, a);
        if (residual) b.axpby(1.0, u, 1.0, r, u);
        Tensor uy = output(s, t, d);
        b.relu_forward(u, uy);
        Tensor ue = output(s, t, d), uye = output(s, t, d);
        b.batchnorm_forward_eval(x, gamma, beta, urm, urv, ue, a);
        if (residual) b.axpby(1.0, ue, 1.0, r, ue);
        b.relu_forward(ue, uye);
        Tensor g = output(s, t, d);
        b.relu_backward(uy, dy, g);
        Tensor udx = output(s, t, d), udgamma = output({C}, t, d), udbeta = output({C}, t, d);
        b.batchnorm_backward(x, g, gamma, umean, uinvstd, udx, udgamma, udbeta);

        const std::string what = std::string("fused vs unfused ") + name(t, s) + (residual ? " +r" : "");
        const std::vector<std::pair<const char*, std::pair<Tensor, Tensor>>> pairs = {
            {"y", {y, uy}},         {"mean", {mean, umean}},       {"invstd", {invstd, uinvstd}},
            {"running_mean", {rm, urm}}, {"running_var", {rv, urv}}, {"eval y", {ye, uye}},
            {"dx", {dx, udx}},      {"dgamma", {dgamma, udgamma}}, {"dbeta", {dbeta, udbeta}}};
        for (const auto& [n, p] : pairs) EXPECT_TRUE(bytes_of(p.first) == bytes_of(p.second)) << what << ": " << n;
        if (residual) EXPECT_TRUE(bytes_of(dr) == bytes_of(g)) << what << ": dr";
      }
}

// bfloat16 activations (x, r, dy, and so y, dx, dr) with float32 gamma, beta and statistics, as under the
// BF16 autocast. The fused op is not in cuda/backend.cpp's kNativeBf16, so the dispatch widens x, r, y, dy to
// float32 on the device, runs the float32 kernels and rounds y, dx, dr back (engine/bf16_widening.h), as on
// the CPU. The float32 values differ by the statistics' roundings (the test above), so a bf16 result may
// differ by one bf16 ulp where they straddle a rounding boundary: |diff| <= 2^-7 |cpu| (+ a float32 floor).
// The backward again reads the CPU's forward results on both backends; dr = masked dy is exact.
TEST(CudaBatchNormRelu, Bf16ActivationsAreWidened) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(45);
  const BatchNormArgs a;
  const DType bf = DType::BF16, f = DType::F32;
  for (const Shape& s : {Shape{2, 3, 5, 6, 7}, Shape{2048, 160}})
    for (bool residual : {false, true}) {
      const int64_t C = s[1];
      const Inputs in = make_inputs(s, f, residual, rng);
      const Tensor x = in.x.to(bf), r = residual ? in.r.to(bf) : Tensor(), dy = in.dy.to(bf);
      Tensor y0 = output(s, bf, Device::cpu()), mean0 = output({C}, f, Device::cpu()),
             invstd0 = output({C}, f, Device::cpu()), rm0 = in.rm.clone(), rv0 = in.rv.clone();
      backend(Device::cpu()).batchnorm_relu_forward_train(x, in.gamma, in.beta, r, y0, mean0, invstd0, rm0, rv0, a);
      const Tol act{1e-6, 1.0 / 128}, stat = tol(f, 2e-5, 2e-5);
      expect_parity([&](Device d) {
        Backend& b = backend(d);
        Tensor y = output(s, bf, d), mean = output({C}, f, d), invstd = output({C}, f, d);
        Tensor run_mean = on(d, in.rm), run_var = on(d, in.rv);
        b.batchnorm_relu_forward_train(on(d, x), on(d, in.gamma), on(d, in.beta), on(d, r), y, mean, invstd,
                                       run_mean, run_var, a);
        Tensor ye = output(s, bf, d);
        b.batchnorm_relu_forward_eval(on(d, x), on(d, in.gamma), on(d, in.beta), on(d, r), run_mean, run_var, ye, a);
        Tensor dx = output(s, bf, d), dgamma = output({C}, f, d), dbeta = output({C}, f, d);
        Tensor dr = residual ? output(s, bf, d) : Tensor();
        b.batchnorm_relu_backward(on(d, x), on(d, y0), on(d, dy), on(d, in.gamma), on(d, mean0), on(d, invstd0), dx,
                                  dgamma, dbeta, dr);
        std::vector<Tensor> out{y, ye, dx, mean, invstd, run_mean, run_var, dgamma, dbeta};
        if (residual) out.push_back(dr);
        return out;
      }, {act, act, act, stat, stat, stat, stat, stat, stat, Tol{0, 0}},
         std::string("batchnorm_relu bf16 activations ") + shape_str(s) + (residual ? " +r" : ""));
    }
}

}  // namespace
}  // namespace hdssl::test
