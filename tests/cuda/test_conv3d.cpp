// Parity of the cuDNN 3D convolution (cuda/conv3d_cudnn.cpp) against the CPU's vol2col + GEMM:
// forward with and without bias, backward-data and backward-filter, 3x3x3 (pad 1) and 1x1x1 (pad 0),
// odd sizes. TF32 is off (the context default, and NVIDIA_TF32_OVERRIDE=0 in the device script), so
// float32 differs only by summation order: each output sums Ci*27 products of values in [-1, 1), and
// the filter gradient sums N*X*Y*Z of them, hence the size-aware absolute tolerances.
#include "cuda/conv3d_cudnn.h"
#include "tests/cuda/parity.h"

namespace hdssl::test {
namespace {

struct ConvCase {
  Shape x;  // N, Ci, X, Y, Z
  int64_t co;
  int k;
};
const std::vector<ConvCase> kCases = {
    {{1, 1, 5, 4, 3}, 1, 3}, {{2, 3, 5, 6, 7}, 4, 3}, {{1, 2, 9, 8, 3}, 5, 3},
    {{2, 16, 12, 10, 6}, 8, 1}, {{2, 8, 16, 16, 8}, 16, 3}, {{1, 5, 1, 1, 1}, 3, 3},
};

TEST(CudaConv3d, ForwardBackwardDataBackwardFilter) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(20);
  for (DType t : kFloatTypes)
    for (const ConvCase& c : kCases) {
      const int pad = c.k / 2;
      const Shape ws{c.co, c.x[1], c.k, c.k, c.k}, ys{c.x[0], c.co, c.x[2], c.x[3], c.x[4]};
      Tensor x = random(c.x, t, rng), w = random(ws, t, rng), b = random({c.co}, t, rng), dy = random(ys, t, rng);
      const double fan = double(c.x[1] * c.k * c.k * c.k), vox = double(c.x[0] * c.x[2] * c.x[3] * c.x[4]);
      expect_parity([&](Device d) {
        Backend& be = backend(d);
        Conv3dArgs a;
        a.pad = pad;
        Tensor y = output(ys, t, d), y_nobias = output(ys, t, d), dx = output(c.x, t, d), dw = output(ws, t, d);
        be.conv3d_forward(on(d, x), on(d, w), on(d, b), y, a);
        be.conv3d_forward(on(d, x), on(d, w), Tensor(), y_nobias, a);
        be.conv3d_backward_data(on(d, dy), on(d, w), dx, a);
        be.conv3d_backward_filter(on(d, x), on(d, dy), dw, a);
        return std::vector<Tensor>{y, y_nobias, dx, dw};
      }, {tol(t, 2e-7 * fan, 1e-5, 1e-13 * fan, 1e-11), tol(t, 2e-7 * fan, 1e-5, 1e-13 * fan, 1e-11),
          tol(t, 2e-7 * double(c.co * c.k * c.k * c.k), 1e-5, 1e-13 * fan, 1e-11),
          tol(t, 2e-7 * vox, 1e-5, 1e-13 * vox, 1e-11)},
         "conv3d k" + std::to_string(c.k) + " " + name(t, c.x) + " -> " + std::to_string(c.co));
    }
  if (!selftest()) EXPECT_GT(cuda::conv3d_cached_algorithms(), 0u);
}

// The algorithm cache: repeating a convolution of a known shape adds no entry and gives the same bits.
TEST(CudaConv3d, AlgorithmChosenOncePerShape) {
  HDSSL_REQUIRE_REAL_CUDA();
  Rng rng(21);
  Tensor x = random({2, 4, 7, 6, 5}, DType::F32, rng).to(gpu()), w = random({3, 4, 3, 3, 3}, DType::F32, rng).to(gpu());
  Tensor y1 = output({2, 3, 7, 6, 5}, DType::F32, gpu()), y2 = output({2, 3, 7, 6, 5}, DType::F32, gpu());
  backend(gpu()).conv3d_forward(x, w, Tensor(), y1, Conv3dArgs{});
  const size_t entries = cuda::conv3d_cached_algorithms();
  backend(gpu()).conv3d_forward(x, w, Tensor(), y2, Conv3dArgs{});
  EXPECT_EQ(cuda::conv3d_cached_algorithms(), entries);
  EXPECT_TRUE(close(y1, y2, Tol{0, 0}));
}

}  // namespace
}  // namespace hdssl::test
