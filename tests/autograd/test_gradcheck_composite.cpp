// End-to-end gradient check of a whole tiny pretraining network in float64: a mini FPN level (conv3d 3x3x3 +
// batch norm (train) + ReLU with an identity skip, max-pool 2 (ceil mode, odd size), conv 1x1x1 to the coarse level, conv 1x1x1 +
// nearest upsample 2 + crop back to the fine size + a lateral conv 1x1x1, added), voxel vectors gathered at
// both levels and concatenated, the Linear-BN1d-ReLU-Linear projection MLP, l2_normalize, InfoNCE between
// the two views, plus 10 x the MSE restoration loss of a conv 1x1x1 head against the un-augmented patches.
// Finite differences over every parameter and both input views must agree with one backward pass.
// The individual ops have their own checks; this one catches what only composition shows (a gradient
// dropped where a value is used twice, shared weights between views, shape bookkeeping across levels).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "autograd/functions.h"
#include "autograd/gradcheck.h"
#include "engine/random.h"

using namespace hdssl;

namespace {
Variable leaf(const Shape& s, Rng& rng, double scale = 1.0) {
  std::vector<double> v(size_t(numel(s)));
  for (double& x : v) x = scale * rng.uniform(-1.0, 1.0);
  return Variable(Tensor::from_vector(v, s), true);
}
Variable ones_leaf(int64_t c, Rng& rng) {  // BN gamma near 1
  std::vector<double> v(static_cast<size_t>(c));
  for (double& x : v) x = 1.0 + 0.2 * rng.uniform(-1.0, 1.0);
  return Variable(Tensor::from_vector(v, {c}), true);
}
Tensor coords(int64_t B, int64_t n, const Shape& size, Rng& rng) {
  std::vector<int32_t> c;
  for (int64_t i = 0; i < B * n; ++i)
    for (int a = 0; a < 3; ++a) c.push_back(int32_t(rng.randint(0, size[size_t(a)])));
  return Tensor::from_vector(c, {B, n, 3});
}

// Parameter slots of the tiny network, in the order gradcheck sees them (after the two input views).
enum Slot {
  kViewA, kViewB,
  kStemW, kStemB, kBnGamma, kBnBeta,          // level 0: conv 3x3x3 1 -> 2, + ReLU(BN(.))
  kDownW, kDownB,                             // level 1: max-pool, conv 1x1x1 2 -> 4
  kUpW, kUpB, kLateralW,                      // decoder: conv 1x1x1 4 -> 2, upsample, crop; lateral 2 -> 2
  kFc1W, kFc1B, kBn1dGamma, kBn1dBeta, kFc2W, kFc2B,  // MLP 6 -> 6 -> 4
  kRestoreW, kRestoreB,                       // restoration head conv 1x1x1 2 -> 1
  kSlots
};

struct TinyNet {
  static constexpr int64_t B = 2, n = 3;                 // N = B * n = 6 voxel vectors per view
  const Shape size{5, 4, 3};                             // odd X and Z: ceil-mode pool, crop after upsample
  Tensor rm0 = Tensor::zeros({2}, DType::F64), rv0 = Tensor::full({2}, 1.0, DType::F64);
  Tensor rm1 = Tensor::zeros({6}, DType::F64), rv1 = Tensor::full({6}, 1.0, DType::F64);
  Tensor coords_a, coords_b, target_a, target_b;

  // The pyramid of one view: {level 0 after the top-down add, level 1}.
  std::pair<Variable, Variable> fpn(const Variable& x, const std::vector<Variable>& p) {
    // Stem conv, then BN + ReLU with an identity skip (a ResBlock without its convs). Without the skip the
    // stem bias would have an exactly zero gradient (batch norm removes it), which checks nothing.
    Variable s = ag::conv3d(x, p[kStemW], p[kStemB], 1);
    Variable f0 = ag::add(s, ag::relu(ag::batchnorm(s, p[kBnGamma], p[kBnBeta], rm0, rv0, true)));
    Variable f1 = ag::conv3d(ag::maxpool2(f0), p[kDownW], p[kDownB], 0);
    Variable up = ag::crop(ag::upsample2(ag::conv3d(f1, p[kUpW], p[kUpB], 0)), {0, 0, 0}, {size[0], size[1], size[2]});
    Variable d0 = ag::add(up, ag::conv3d(f0, p[kLateralW], Variable(), 0));
    return {d0, f1};
  }
  Variable project(const Variable& d0, const Variable& f1, const Tensor& c, const std::vector<Variable>& p) {
    Variable v = ag::concat_channels({ag::gather_voxels(d0, c, 0), ag::gather_voxels(f1, c, 1)});
    // BN1d + ReLU fused, as in the network's projection head (the stem above keeps the unfused pair)
    Variable h = ag::batchnorm_relu(ag::linear(v, p[kFc1W], p[kFc1B]), p[kBn1dGamma], p[kBn1dBeta], rm1, rv1, true);
    return ag::l2_normalize(ag::linear(h, p[kFc2W], p[kFc2B]));
  }
  Variable loss(const std::vector<Variable>& p) {
    auto [d0a, f1a] = fpn(p[kViewA], p);
    auto [d0b, f1b] = fpn(p[kViewB], p);
    Variable contrast = ag::infonce(project(d0a, f1a, coords_a, p), project(d0b, f1b, coords_b, p), 0.2);
    Variable ra = ag::mse(ag::conv3d(d0a, p[kRestoreW], p[kRestoreB], 0), target_a);
    Variable rb = ag::mse(ag::conv3d(d0b, p[kRestoreW], p[kRestoreB], 0), target_b);
    return ag::add(contrast, ag::scale(ag::add(ra, rb), 10.0 / 2));  // Lc + lambda * (MSE_A + MSE_B) / 2
  }
};
}  // namespace

TEST(GradcheckComposite, TinyPretrainingNetworkEndToEnd) {
  Rng rng(2024);
  TinyNet net;
  const Shape vol{TinyNet::B, 1, net.size[0], net.size[1], net.size[2]};
  std::vector<Variable> p(kSlots);
  p[kViewA] = leaf(vol, rng);
  p[kViewB] = leaf(vol, rng);
  p[kStemW] = leaf({2, 1, 3, 3, 3}, rng, 0.5);
  p[kStemB] = leaf({2}, rng, 0.1);
  p[kBnGamma] = ones_leaf(2, rng);
  p[kBnBeta] = leaf({2}, rng, 0.1);
  p[kDownW] = leaf({4, 2, 1, 1, 1}, rng);
  p[kDownB] = leaf({4}, rng, 0.1);
  p[kUpW] = leaf({2, 4, 1, 1, 1}, rng);
  p[kUpB] = leaf({2}, rng, 0.1);
  p[kLateralW] = leaf({2, 2, 1, 1, 1}, rng);
  p[kFc1W] = leaf({6, 6}, rng, 0.5);
  p[kFc1B] = leaf({6}, rng, 0.1);
  p[kBn1dGamma] = ones_leaf(6, rng);
  p[kBn1dBeta] = leaf({6}, rng, 0.1);
  p[kFc2W] = leaf({4, 6}, rng, 0.5);
  p[kFc2B] = leaf({4}, rng, 0.1);
  p[kRestoreW] = leaf({1, 2, 1, 1, 1}, rng, 0.5);
  p[kRestoreB] = leaf({1}, rng, 0.1);
  net.coords_a = coords(TinyNet::B, TinyNet::n, net.size, rng);
  net.coords_b = coords(TinyNet::B, TinyNet::n, net.size, rng);
  const Shape target_shape{TinyNet::B, 1, net.size[0], net.size[1], net.size[2]};
  net.target_a = leaf(target_shape, rng).value();
  net.target_b = leaf(target_shape, rng).value();

  // The first MLP bias feeds batch norm directly, so its true gradient is exactly zero (BN subtracts the
  // batch mean) and a relative finite-difference error of it would measure rounding noise only. It is
  // checked on its own below; gradcheck covers every other parameter and both views.
  std::vector<Variable> checked;
  for (int k = 0; k < kSlots; ++k)
    if (k != kFc1B) checked.push_back(p[size_t(k)]);
  auto with_all_slots = [&](const std::vector<Variable>& v) {
    std::vector<Variable> all(v.begin(), v.end());
    all.insert(all.begin() + kFc1B, p[kFc1B]);
    return net.loss(all);
  };
  const GradCheckResult r = gradcheck(with_all_slots, checked);
  std::printf("[gradcheck] %-40s max rel error %.3e\n", "composite tiny network", r.max_rel_error);
  EXPECT_LT(r.max_rel_error, 1e-6) << "composite: max relative error " << r.max_rel_error << " at " << r.worst;

  // Every parameter and both views receive a gradient from one backward pass; the BN-fed bias a zero one.
  for (Variable& v : p) v.zero_grad();
  net.loss(p).backward();
  for (size_t k = 0; k < p.size(); ++k) EXPECT_TRUE(p[k].grad().defined()) << "slot " << k;
  double w_scale = 0;
  for (double g : p[kFc1W].grad().to_vector<double>()) w_scale = std::max(w_scale, std::fabs(g));
  for (double g : p[kFc1B].grad().to_vector<double>()) EXPECT_LT(std::fabs(g), 1e-12 * w_scale);
  EXPECT_GT(w_scale, 1e-3);
}
