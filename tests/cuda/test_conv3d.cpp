// Parity of the cuDNN 3D convolution (cuda/conv3d_cudnn.cpp) against the CPU's vol2col + GEMM:
// forward with and without bias, backward-data and backward-filter, 3x3x3 (pad 1) and 1x1x1 (pad 0),
// odd sizes. TF32 is off (the context default, and NVIDIA_TF32_OVERRIDE=0 in the device script), so
// float32 differs only by summation order: each output sums Ci*27 products of values in [-1, 1), and
// the filter gradient sums N*X*Y*Z of them, hence the size-aware absolute tolerances.
#include <algorithm>
#include <cmath>

#include "cuda/context.h"
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

// Every distinct convolution shape of the paper's network (base 32, 5 scales, patch 128x128x32; level l has
// 32 * 2^l channels at (128, 128, 32) / 2^l) at batch 1 instead of 10: the first conv, the ResBlock convs
// of each level, the 1x1x1 down / up / skip convs of the FPN, the 1x1x1 per-scale projections (width 32)
// and both restoration heads, each forward, backward-data and backward-filter, with TF32 off (exact
// float32: the size-aware tolerances of the test above) and on (PyTorch's default for convolutions: inputs
// rounded to 10-bit mantissas, a relative error of up to 2^-11 per product, so |error| ~ 2^-11 sqrt(fan)
// for sums of fan products of values in [-1, 1): atol 2e-3 sqrt(fan), rtol 1e-3). These are the shapes
// whose cuDNN algorithms training runs. In the CPU self-test (HDSSL_PARITY_SELFTEST=1) the volumes are 4x
// smaller along X and Y and 2x along Z, so the test checks itself in seconds; the GPU runs the real sizes.
struct PaperConv {
  int64_t ci, co;
  int k, level;
  const char* what;
};
const std::vector<PaperConv> kPaperConvs = {
    {1, 32, 3, 0, "first_conv"},      {32, 32, 3, 0, "ResBlock l0"},   {64, 64, 3, 1, "ResBlock l1"},
    {128, 128, 3, 2, "ResBlock l2"},  {256, 256, 3, 3, "ResBlock l3"}, {512, 512, 3, 4, "ResBlock bottom"},
    {32, 64, 1, 1, "down l0"},        {64, 128, 1, 2, "down l1"},      {128, 256, 1, 3, "down l2"},
    {256, 512, 1, 4, "down l3"},      {64, 32, 1, 1, "up l0"},         {128, 64, 1, 2, "up l1"},
    {256, 128, 1, 3, "up l2"},        {512, 256, 1, 4, "up l3"},       {32, 32, 1, 0, "skip l0, projection l0"},
    {64, 64, 1, 1, "skip l1"},        {128, 128, 1, 2, "skip l2"},     {256, 256, 1, 3, "skip l3"},
    {64, 32, 1, 1, "projection l1"},  {128, 32, 1, 2, "projection l2"}, {256, 32, 1, 3, "projection l3"},
    {512, 32, 1, 4, "projection l4"}, {32, 16, 3, 0, "restoration conv0"}, {16, 1, 1, 0, "restoration conv3"},
    {32, 1, 1, 0, "restoration 1x1 (vox2vec)"},
};

TEST(CudaConv3d, PaperNetworkShapesTf32OffAndOn) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(22);
  const DType t = DType::F32;
  for (bool tf32 : {false, true}) {
    if (!selftest()) cuda::set_allow_tf32(tf32);
    for (const PaperConv& c : kPaperConvs) {
      const int64_t shrink_xy = selftest() ? 4 : 1, shrink_z = selftest() ? 2 : 1;
      const int64_t X = std::max<int64_t>(1, (128 >> c.level) / shrink_xy);
      const int64_t Z = std::max<int64_t>(1, (32 >> c.level) / shrink_z);
      const Shape xs{1, c.ci, X, X, Z}, ws{c.co, c.ci, c.k, c.k, c.k}, ys{1, c.co, X, X, Z};
      Tensor x = random(xs, t, rng), w = random(ws, t, rng), b = random({c.co}, t, rng), dy = random(ys, t, rng);
      const double fan = double(c.ci * c.k * c.k * c.k), fan_dx = double(c.co * c.k * c.k * c.k),
                   vox = double(X * X * Z);
      auto tl = [&](double n) { return tf32 ? Tol{2e-3 * std::sqrt(n), 1e-3} : Tol{2e-7 * n, 1e-5}; };
      expect_parity([&](Device d) {
        Backend& be = backend(d);
        Conv3dArgs a;
        a.pad = c.k / 2;
        Tensor y = output(ys, t, d), dx = output(xs, t, d), dw = output(ws, t, d);
        be.conv3d_forward(on(d, x), on(d, w), on(d, b), y, a);
        be.conv3d_backward_data(on(d, dy), on(d, w), dx, a);
        be.conv3d_backward_filter(on(d, x), on(d, dy), dw, a);
        return std::vector<Tensor>{y, dx, dw};
      }, {tl(fan), tl(fan_dx), tl(vox)},
         std::string(c.what) + " k" + std::to_string(c.k) + " " + name(t, xs) + " -> " + std::to_string(c.co) +
             (tf32 ? ", TF32 on" : ", TF32 off"));
    }
  }
  if (!selftest()) cuda::set_allow_tf32(false);
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
