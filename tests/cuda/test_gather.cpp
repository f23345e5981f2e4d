// Parity of the voxel gather and its scatter-add backward (cuda/kernels/gather_voxels.cu) at pyramid
// levels 0..4, with repeated voxels (the backward's atomics must add them all). The forward is exact;
// the backward sums a handful of values per voxel in a different order.
#include <cmath>

#include "tests/cuda/parity.h"

namespace hdssl::test {
namespace {

TEST(CudaGather, ForwardBackwardAtEveryLevel) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(60);
  const Shape patch{16, 12, 8};  // full-resolution patch size (X, Y, Z)
  for (DType t : kFloatTypes)
    for (int level = 0; level <= 3; ++level)
      for (int64_t B : {1, 3}) {
        const int64_t n = 37, C = 5;
        const Shape fs{B, C, (patch[0] + (1 << level) - 1) >> level, (patch[1] + (1 << level) - 1) >> level,
                       (patch[2] + (1 << level) - 1) >> level};
        std::vector<int32_t> cv;
        for (int64_t i = 0; i < B * n; ++i)
          for (int a = 0; a < 3; ++a) cv.push_back(int32_t(rng.randint(0, patch[size_t(a)])));
        cv[3] = cv[0], cv[4] = cv[1], cv[5] = cv[2];  // an exact repeat in pair 0
        Tensor coords = Tensor::from_vector(cv, {B, n, 3});
        Tensor feat = random(fs, t, rng), dout = random({B * n, C}, t, rng);
        expect_parity([&](Device d) {
          Tensor out = output({B * n, C}, t, d), dfeat = output(fs, t, d);
          backend(d).gather_voxels(on(d, feat), on(d, coords), level, out);
          backend(d).gather_voxels_backward(on(d, dout), on(d, coords), level, dfeat);
          return std::vector<Tensor>{out, dfeat};
        }, {Tol{0, 0}, tol(t, 1e-6, 1e-6)}, "gather level " + std::to_string(level) + " " + name(t, fs));
      }
}

// The GPU cannot throw for a bad coordinate without a host sync: its row becomes NaN instead.
TEST(CudaGather, OutOfRangeCoordinateGivesNaNRow) {
  HDSSL_REQUIRE_REAL_CUDA();  // the CPU throws instead
  Tensor feat = Tensor::full({1, 2, 4, 4, 4}, 1.0, DType::F32, gpu());
  Tensor coords = Tensor::from_vector(std::vector<int32_t>{0, 0, 0, 9, 0, 0}, {1, 2, 3}).to(gpu());
  Tensor out = output({2, 2}, DType::F32, gpu());
  backend(gpu()).gather_voxels(feat, coords, 0, out);
  auto v = out.to_vector<float>();
  EXPECT_EQ(v[0], 1.0f);
  EXPECT_EQ(v[1], 1.0f);
  EXPECT_TRUE(std::isnan(v[2]) && std::isnan(v[3]));
}

}  // namespace
}  // namespace hdssl::test
