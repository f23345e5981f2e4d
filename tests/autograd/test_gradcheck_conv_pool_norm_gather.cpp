// Finite-difference gradient checks (float64) of the U-Net's functions: conv3d, maxpool2, upsample2, crop,
// concat_channels, batchnorm, batchnorm_relu and gather_voxels. Every input and parameter gradient is checked
// against central differences; the sizes are small but odd where it matters (ceil-mode pooling, cropping after
// upsampling, odd channel counts, batch > 1). Each test prints its max relative error and records it as a
// test property ("max_rel_error").
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "autograd/functions.h"
#include "autograd/gradcheck.h"
#include "engine/random.h"

using namespace hdssl;

namespace {
Tensor random_tensor(const Shape& shape, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  Rng rng(seed);
  std::vector<double> v(size_t(numel(shape)));
  for (double& x : v) x = rng.uniform(lo, hi);
  return Tensor::from_vector(v, shape);
}
Variable leaf(const Shape& shape, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  return Variable(random_tensor(shape, seed, lo, hi), true);
}

using Fn = std::function<Variable(const std::vector<Variable>&)>;

// Runs the check, prints and records the error, and fails above 1e-6.
void expect_gradients(const Fn& f, const std::vector<Variable>& inputs) {
  const GradCheckResult r = gradcheck(f, inputs);
  const std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  std::printf("[gradcheck] %s: max relative error %.3g\n", name.c_str(), r.max_rel_error);
  ::testing::Test::RecordProperty("max_rel_error", std::to_string(r.max_rel_error));
  EXPECT_LT(r.max_rel_error, 1e-6) << r.worst;
}
}  // namespace

// ---- conv3d ----

TEST(GradcheckConv, Conv3x3x3WithBiasOddSizesBatch2) {
  Variable x = leaf({2, 3, 5, 4, 3}, 1), w = leaf({5, 3, 3, 3, 3}, 2), b = leaf({5}, 3);
  expect_gradients([](const std::vector<Variable>& v) { return ag::conv3d(v[0], v[1], v[2], 1); }, {x, w, b});
}

TEST(GradcheckConv, Conv3x3x3WithoutBias) {
  Variable x = leaf({1, 2, 3, 5, 4}, 4), w = leaf({3, 2, 3, 3, 3}, 5);
  expect_gradients([](const std::vector<Variable>& v) { return ag::conv3d(v[0], v[1], Variable(), 1); }, {x, w});
}

TEST(GradcheckConv, Conv1x1x1WithBias) {
  Variable x = leaf({2, 5, 3, 4, 5}, 6), w = leaf({3, 5, 1, 1, 1}, 7), b = leaf({3}, 8);
  expect_gradients([](const std::vector<Variable>& v) { return ag::conv3d(v[0], v[1], v[2], 0); }, {x, w, b});
}

TEST(GradcheckConv, Conv1x1x1WithoutBias) {
  Variable x = leaf({3, 4, 2, 3, 3}, 9), w = leaf({7, 4, 1, 1, 1}, 10);
  expect_gradients([](const std::vector<Variable>& v) { return ag::conv3d(v[0], v[1], Variable(), 0); }, {x, w});
}

TEST(GradcheckConv, Conv3x3x3OnThinVolumes) {
  // Axes of size 1 and 2 (the deepest pyramid levels): every tap but the centre falls partly outside.
  double worst = 0;
  for (const Shape& xs : {Shape{1, 2, 1, 1, 1}, Shape{2, 2, 3, 1, 2}, Shape{1, 3, 1, 4, 1}}) {
    Variable x = leaf(xs, 14 + uint64_t(xs[2] * 10 + xs[3])), w = leaf({2, xs[1], 3, 3, 3}, 15), b = leaf({2}, 16);
    const GradCheckResult r =
        gradcheck([](const std::vector<Variable>& v) { return ag::conv3d(v[0], v[1], v[2], 1); }, {x, w, b});
    EXPECT_LT(r.max_rel_error, 1e-6) << shape_str(xs) << ": " << r.worst;
    worst = std::max(worst, r.max_rel_error);
  }
  std::printf("[gradcheck] Conv3x3x3OnThinVolumes: max relative error %.3g\n", worst);
  RecordProperty("max_rel_error", std::to_string(worst));
}

TEST(GradcheckConv, StemConvOnDataSkipsTheInputGradient) {
  // The stem's input is data (no gradient): only the weight and bias gradients are computed and checked.
  Variable image(random_tensor({2, 1, 4, 5, 3}, 11), false);
  Variable w = leaf({3, 1, 3, 3, 3}, 12), b = leaf({3}, 13);
  expect_gradients([image](const std::vector<Variable>& v) { return ag::conv3d(image, v[0], v[1], 1); }, {w, b});
  EXPECT_FALSE(image.grad().defined());
}

// ---- pooling, upsampling, cropping ----

TEST(GradcheckPool, MaxPoolCeilModeOddSizes) {
  Variable x = leaf({2, 3, 5, 3, 7}, 21);
  expect_gradients([](const std::vector<Variable>& v) { return ag::maxpool2(v[0]); }, {x});
}

TEST(GradcheckPool, MaxPoolEvenSizes) {
  Variable x = leaf({1, 2, 4, 6, 2}, 22);
  expect_gradients([](const std::vector<Variable>& v) { return ag::maxpool2(v[0]); }, {x});
}

TEST(GradcheckPool, Upsample2) {
  Variable x = leaf({2, 3, 2, 3, 1}, 23);
  expect_gradients([](const std::vector<Variable>& v) { return ag::upsample2(v[0]); }, {x});
}

TEST(GradcheckPool, CropInterior) {
  Variable x = leaf({2, 3, 6, 5, 4}, 24);
  expect_gradients([](const std::vector<Variable>& v) { return ag::crop(v[0], {1, 0, 2}, {4, 5, 2}); }, {x});
}

TEST(GradcheckPool, FpnUpPathOnOddVolume) {
  // The decoder's up path: pool an odd skip (ceil mode), conv 1x1x1, upsample x2, crop back to the skip's
  // size, add the lateral 1x1x1 conv of the skip.
  Variable skip = leaf({2, 3, 5, 7, 3}, 25), w_up = leaf({3, 3, 1, 1, 1}, 26), b_up = leaf({3}, 27),
           w_lat = leaf({3, 3, 1, 1, 1}, 28);
  auto f = [](const std::vector<Variable>& v) {
    const Variable& s = v[0];
    Variable up = ag::upsample2(ag::conv3d(ag::maxpool2(s), v[1], v[2], 0));  // [2,3,6,8,4]
    up = ag::crop(up, {0, 0, 0}, {s.size(2), s.size(3), s.size(4)});
    return ag::add(up, ag::conv3d(s, v[3], Variable(), 0));
  };
  expect_gradients(f, {skip, w_up, b_up, w_lat});
}

// ---- concatenation ----

TEST(GradcheckConcat, FiveDimensionalOddChannels) {
  Variable a = leaf({2, 1, 3, 2, 3}, 31), b = leaf({2, 3, 3, 2, 3}, 32), c = leaf({2, 2, 3, 2, 3}, 33);
  expect_gradients([](const std::vector<Variable>& v) { return ag::concat_channels({v[0], v[1], v[2]}); }, {a, b, c});
}

TEST(GradcheckConcat, TwoDimensionalRows) {
  Variable a = leaf({4, 3}, 34), b = leaf({4, 5}, 35);
  expect_gradients([](const std::vector<Variable>& v) { return ag::concat_channels({v[0], v[1]}); }, {a, b});
}

TEST(GradcheckConcat, OnlyInputsThatNeedAGradientGetOne) {
  Variable a = leaf({3, 2}, 36);
  Variable constant(random_tensor({3, 4}, 37), false);
  expect_gradients([constant](const std::vector<Variable>& v) { return ag::concat_channels({constant, v[0]}); }, {a});
  EXPECT_FALSE(constant.grad().defined());
}

// ---- batch normalization ----

namespace {
void check_batchnorm(const Shape& xshape, bool training, uint64_t seed) {
  const int64_t C = xshape[1];
  Variable x = leaf(xshape, seed, -2.0, 3.0), gamma = leaf({C}, seed + 1, 0.5, 1.5), beta = leaf({C}, seed + 2);
  Tensor rm = random_tensor({C}, seed + 3), rv = random_tensor({C}, seed + 4, 0.5, 2.0);
  auto f = [&rm, &rv, training](const std::vector<Variable>& v) {
    return ag::batchnorm(v[0], v[1], v[2], rm, rv, training);
  };
  expect_gradients(f, {x, gamma, beta});
}
}  // namespace

TEST(GradcheckNorm, BatchNorm5dTraining) { check_batchnorm({2, 3, 3, 4, 2}, true, 41); }
TEST(GradcheckNorm, BatchNorm2dTraining) { check_batchnorm({6, 5}, true, 45); }
TEST(GradcheckNorm, BatchNorm5dEval) { check_batchnorm({2, 3, 3, 1, 5}, false, 49); }
TEST(GradcheckNorm, BatchNorm2dEval) { check_batchnorm({4, 3}, false, 53); }

// The fused batch norm + ReLU (+ residual): the ReLU's kink is met with probability ~0 at these random
// inputs (a pre-activation within the 1e-6 step of 0), so central differences hold.
namespace {
void check_batchnorm_relu(const Shape& xshape, bool training, bool residual, uint64_t seed) {
  const int64_t C = xshape[1];
  Variable x = leaf(xshape, seed, -2.0, 3.0), gamma = leaf({C}, seed + 1, 0.5, 1.5), beta = leaf({C}, seed + 2);
  Variable r = leaf(xshape, seed + 5);
  Tensor rm = random_tensor({C}, seed + 3), rv = random_tensor({C}, seed + 4, 0.5, 2.0);
  auto f = [&rm, &rv, training, residual](const std::vector<Variable>& v) {
    return ag::batchnorm_relu(v[0], v[1], v[2], rm, rv, training, residual ? v[3] : Variable());
  };
  std::vector<Variable> leaves{x, gamma, beta};
  if (residual) leaves.push_back(r);
  expect_gradients(f, leaves);
}
}  // namespace

TEST(GradcheckNorm, BatchNormRelu5dTraining) { check_batchnorm_relu({2, 3, 3, 4, 2}, true, false, 61); }
TEST(GradcheckNorm, BatchNormRelu5dTrainingResidual) { check_batchnorm_relu({2, 3, 3, 4, 2}, true, true, 65); }
TEST(GradcheckNorm, BatchNormRelu2dTraining) { check_batchnorm_relu({6, 5}, true, false, 69); }
TEST(GradcheckNorm, BatchNormRelu2dTrainingResidual) { check_batchnorm_relu({6, 5}, true, true, 73); }
TEST(GradcheckNorm, BatchNormRelu5dEval) { check_batchnorm_relu({2, 3, 3, 1, 5}, false, false, 77); }
TEST(GradcheckNorm, BatchNormRelu5dEvalResidual) { check_batchnorm_relu({2, 3, 3, 1, 5}, false, true, 81); }
TEST(GradcheckNorm, BatchNormRelu2dEvalResidual) { check_batchnorm_relu({4, 3}, false, true, 85); }

// ---- voxel gather ----

namespace {
// Coordinates in a 16x8x8 patch, batch 2, with voxels repeated within and across levels.
Tensor patch_coords() {
  std::vector<int32_t> c = {0, 0, 0,   15, 7, 7,  3, 2, 1,  3, 2, 1,  8, 4, 4,  9, 5, 5,  1, 6, 7,
                            15, 0, 3,  2, 2, 2,   2, 3, 3,  14, 7, 1, 2, 2, 2, 0, 7, 6,  15, 0, 3};
  return Tensor::from_vector(c, {2, 7, 3});
}
}  // namespace

TEST(GradcheckGather, LevelsZeroToThreeWithRepeatedVoxels) {
  const Tensor coords = patch_coords();
  double worst = 0;
  for (int level = 0; level <= 3; ++level) {
    Variable feat = leaf({2, 3, 16 >> level, 8 >> level, 8 >> level}, 60 + uint64_t(level));
    const GradCheckResult r =
        gradcheck([&](const std::vector<Variable>& v) { return ag::gather_voxels(v[0], coords, level); }, {feat});
    EXPECT_LT(r.max_rel_error, 1e-6) << "level " << level << ": " << r.worst;
    worst = std::max(worst, r.max_rel_error);
  }
  std::printf("[gradcheck] gather levels 0..3: max relative error %.3g\n", worst);
  RecordProperty("max_rel_error", std::to_string(worst));
}

TEST(GradcheckGather, RepeatedVoxelsAccumulate) {
  // Voxel (3,2,1) of item 0 is listed twice and (1,1,1) at level 1 also holds (2,2,2)/(2,3,3) of item 1
  // twice: with dout = 1 the gradient there counts the rows that read it.
  const Tensor coords = patch_coords();
  Variable feat = leaf({2, 1, 8, 4, 4}, 70);
  Variable out = ag::gather_voxels(feat, coords, 1);
  ag::sum(out).backward();
  const std::vector<double> g = feat.grad().to_vector<double>();
  auto at = [&](int b, int x, int y, int z) { return g[size_t(((b * 8 + x) * 4 + y) * 4 + z)]; };
  EXPECT_EQ(at(0, 1, 1, 0), 2.0);  // (3,2,1) twice
  EXPECT_EQ(at(1, 1, 1, 1), 3.0);  // (2,2,2), (2,3,3), (2,2,2)
  EXPECT_EQ(at(0, 0, 0, 0), 1.0);
  EXPECT_EQ(at(1, 7, 0, 1), 2.0);  // (15,0,3) twice
  double total = 0;
  for (double v : g) total += v;
  EXPECT_EQ(total, 14.0);  // one per row
}

TEST(GradcheckGather, OutOfRangeCoordinateThrowsNamingIt) {
  Variable feat = leaf({1, 2, 4, 4, 2}, 71);
  const Tensor coords = Tensor::from_vector(std::vector<int32_t>{1, 2, 3, 8, 1, 4}, {1, 2, 3});
  try {
    ag::gather_voxels(feat, coords, 1);  // (8,1,4) >> 1 = (4,0,2): outside [4,4,2]
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("(8, 1, 4)"), std::string::npos) << e.what();
  }
  const Tensor negative = Tensor::from_vector(std::vector<int32_t>{0, -1, 0}, {1, 1, 3});
  EXPECT_THROW(ag::gather_voxels(feat, negative, 0), Error);
}
