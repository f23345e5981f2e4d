// Parity of max-pool (values and argmax indices), nearest upsampling and cropping, forward and backward
// (cuda/kernels/pool_upsample.cu). Pure data movement and at most 8-term sums: exact in both dtypes
// except the upsample backward's 8-term sum (summation order may differ).
#include "tests/cuda/parity.h"

namespace hdssl::test {
namespace {

const std::vector<Shape> kVolumes = {{1, 1, 1, 1, 1}, {2, 3, 4, 6, 8}, {1, 2, 5, 7, 3}, {2, 4, 9, 1, 6}, {3, 5, 17, 13, 11}};

TEST(CudaPool, MaxPool2CeilModeForwardBackward) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(30);
  for (DType t : kFloatTypes)
    for (const Shape& s : kVolumes) {
      const Shape ys{s[0], s[1], (s[2] + 1) / 2, (s[3] + 1) / 2, (s[4] + 1) / 2};
      Tensor x = random(s, t, rng), dy = random(ys, t, rng);
      expect_parity([&](Device d) {
        Tensor y = output(ys, t, d), idx = output(ys, DType::I32, d), dx = output(s, t, d);
        backend(d).maxpool2_forward(on(d, x), y, idx);
        backend(d).maxpool2_backward(on(d, dy), idx, dx);
        return std::vector<Tensor>{y, idx, dx};
      }, {Tol{0, 0}}, "maxpool2 " + name(t, s));
    }
}

TEST(CudaPool, MaxPool2TiesKeepTheFirst) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(31);
  Tensor x = random_int({2, 2, 5, 4, 3}, rng, 0, 3).to(DType::F32);  // many ties
  expect_parity([&](Device d) {
    const Shape ys{2, 2, 3, 2, 2};
    Tensor y = output(ys, DType::F32, d), idx = output(ys, DType::I32, d);
    backend(d).maxpool2_forward(on(d, x), y, idx);
    return std::vector<Tensor>{y, idx};
  }, {Tol{0, 0}}, "maxpool2 ties");
}

TEST(CudaPool, Upsample2ForwardBackward) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(32);
  for (DType t : kFloatTypes)
    for (const Shape& s : kVolumes) {
      const Shape ys{s[0], s[1], 2 * s[2], 2 * s[3], 2 * s[4]};
      Tensor x = random(s, t, rng), dy = random(ys, t, rng);
      expect_parity([&](Device d) {
        Tensor y = output(ys, t, d), dx = output(s, t, d);
        backend(d).upsample2_forward(on(d, x), y);
        backend(d).upsample2_backward(on(d, dy), dx);
        return std::vector<Tensor>{y, dx};
      }, {Tol{0, 0}, tol(t, 1e-6, 1e-6)}, "upsample2 " + name(t, s));
    }
}

TEST(CudaPool, CropForwardBackward) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(33);
  struct Case { Shape big, box; int64_t o[3]; };
  const std::vector<Case> cases = {{{2, 3, 9, 8, 7}, {2, 3, 8, 8, 6}, {0, 0, 0}},
                                   {{1, 2, 5, 6, 7}, {1, 2, 3, 1, 4}, {2, 5, 3}},
                                   {{2, 1, 4, 4, 4}, {2, 1, 4, 4, 4}, {0, 0, 0}}};
  for (DType t : kFloatTypes)
    for (const Case& c : cases) {
      Tensor x = random(c.big, t, rng), dy = random(c.box, t, rng);
      expect_parity([&](Device d) {
        Tensor y = output(c.box, t, d), dx = output(c.big, t, d);
        backend(d).crop_forward(on(d, x), y, c.o);
        backend(d).crop_backward(on(d, dy), dx, c.o);
        return std::vector<Tensor>{y, dx};
      }, {Tol{0, 0}}, "crop " + name(t, c.big) + " -> " + shape_str(c.box));
    }
}

}  // namespace
}  // namespace hdssl::test
