// Every grid-stride loop wraps: a kernel launch has at most 65,536 blocks of 256 threads (cuda/context.h,
// grid_for), 16,777,216 threads, so a tensor of 17,040,384 elements (1 x 2 x 258 x 258 x 128) makes each
// thread of the element-wise, pooling, upsampling, copy, batch-norm, loss and Adam kernels take a second
// element. Parity with the CPU at that size, float32 only (the training dtype; 68 MB a tensor), tolerances
// beside each as in the per-op tests, widened for the reductions over 17 M values (float32 partial sums
// in a different order: |error| ~ eps * sqrt(N) * |values| at worst ~ 1e-7 * 4e3 * 1, hence atol 1e-2 on
// sums of ~1e3 and rtol 1e-5 on the sum of squares, ~5.7e6).
#include "tests/cuda/parity.h"

namespace hdssl::test {
namespace {

const Shape kBig{1, 2, 258, 258, 128};  // 17,040,384 elements > 65,536 * 256
const DType kT = DType::F32;

TEST(CudaGridStride, ElementwiseAndAdamWrap) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(41);
  const Tensor x = random(kBig, kT, rng), y = random(kBig, kT, rng);
  expect_parity([&](Device d) {
    Tensor f = output(kBig, kT, d), ax = output(kBig, kT, d), r = output(kBig, kT, d), dr = output(kBig, kT, d);
    backend(d).fill(f, 0.25);
    backend(d).axpby(0.5, on(d, x), -2.0, on(d, y), ax);
    backend(d).relu_forward(on(d, x), r);
    backend(d).relu_backward(r, on(d, y), dr);
    return std::vector<Tensor>{f, ax, r, dr};
  }, {Tol{0, 0}, tol(kT, 2e-7, 1e-6), Tol{0, 0}, Tol{0, 0}}, "fill/axpby/relu " + name(kT, kBig));
  expect_parity([&](Device d) {
    Tensor p = on(d, x), m = Tensor::zeros(kBig, kT, d), v = Tensor::zeros(kBig, kT, d);
    AdamArgs a;
    backend(d).adam_step(p, on(d, y), m, v, a, 0.5);
    return std::vector<Tensor>{p, m, v};
  }, {tol(kT, 1e-7, 1e-6)}, "adam " + name(kT, kBig));
}

TEST(CudaGridStride, PoolUpsampleCopyWrap) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(42);
  const Tensor x = random(kBig, kT, rng);
  const Shape half{1, 2, 129, 129, 64}, cropped{1, 2, 256, 256, 126}, wide{1, 3, 258, 258, 128};
  const Tensor dy_half = random(half, kT, rng), small = random(half, kT, rng);
  expect_parity([&](Device d) {
    Tensor y = output(half, kT, d), idx = output(half, DType::I32, d), dx = output(kBig, kT, d);
    backend(d).maxpool2_forward(on(d, x), y, idx);
    backend(d).maxpool2_backward(on(d, dy_half), idx, dx);  // one thread per input voxel: wraps
    Tensor up = output(kBig, kT, d), dsmall = output(half, kT, d);
    backend(d).upsample2_forward(on(d, small), up);       // one thread per output voxel: wraps
    backend(d).upsample2_backward(on(d, x), dsmall);
    Tensor c = output(cropped, kT, d), cc = Tensor::zeros(wide, kT, d);
    const int64_t off[3] = {1, 2, 1};
    backend(d).crop_forward(on(d, x), c, off);
    backend(d).copy_channels(on(d, x), cc, 1, false);
    return std::vector<Tensor>{y, idx, dx, up, dsmall, c, cc};
  }, {Tol{0, 0}, Tol{0, 0}, Tol{0, 0}, Tol{0, 0}, tol(kT, 1e-6, 1e-6), Tol{0, 0}, Tol{0, 0}},
     "maxpool/upsample/crop/copy_channels " + name(kT, kBig));
}

TEST(CudaGridStride, ReductionsBatchNormAndLossWrap) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(43);
  const Tensor x = random(kBig, kT, rng), t = random(kBig, kT, rng, 0, 1), dy = random(kBig, kT, rng);
  const Tensor gamma = random({2}, kT, rng, 0.5, 1.5), beta = random({2}, kT, rng);
  expect_parity([&](Device d) {
    Tensor s = Tensor::zeros({1}, kT, d), sq = Tensor::zeros({1}, kT, d), cs = output({2}, kT, d);
    backend(d).sum_all(on(d, x), s);
    backend(d).sum_squares(on(d, x), sq);
    backend(d).channel_sum(on(d, x), cs);
    return std::vector<Tensor>{s, sq, cs};
  }, {tol(kT, 1e-2, 1e-5), tol(kT, 0, 1e-5), tol(kT, 1e-2, 1e-5)}, "sum_all/sum_squares/channel_sum");
  expect_parity([&](Device d) {
    Tensor y = output(kBig, kT, d), mean = output({2}, kT, d), invstd = output({2}, kT, d);
    Tensor rm = Tensor::zeros({2}, kT, d), rv = Tensor::full({2}, 1.0, kT, d);
    backend(d).batchnorm_forward_train(on(d, x), on(d, gamma), on(d, beta), y, mean, invstd, rm, rv,
                                       BatchNormArgs{});
    Tensor dx = output(kBig, kT, d), dg = output({2}, kT, d), db = output({2}, kT, d);
    backend(d).batchnorm_backward(on(d, x), on(d, dy), on(d, gamma), mean, invstd, dx, dg, db);
    return std::vector<Tensor>{y, mean, invstd, rm, rv, dx, dg, db};
  }, {tol(kT, 2e-5, 2e-5), tol(kT, 1e-6, 1e-5), tol(kT, 1e-6, 1e-5), tol(kT, 1e-6, 1e-5), tol(kT, 1e-6, 1e-5),
      tol(kT, 2e-5, 2e-5), tol(kT, 1e-2, 1e-5)}, "batchnorm " + name(kT, kBig));
  expect_parity([&](Device d) {
    Tensor loss = output({1}, kT, d), dloss = Tensor::full({1}, 1.0, kT, d), dx = output(kBig, kT, d);
    backend(d).mse_forward(on(d, x), on(d, t), loss);
    backend(d).mse_backward(on(d, x), on(d, t), dloss, dx);
    return std::vector<Tensor>{loss, dx};
  }, {tol(kT, 1e-6, 1e-5), tol(kT, 1e-12, 1e-6)}, "mse " + name(kT, kBig));
}

}  // namespace
}  // namespace hdssl::test
