// Sampler invariants and augmentation properties (docs/method.md sections 3-4).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "data/augment.h"
#include "data/sampler.h"
#include "tests/data/test_util.h"

using namespace hdssl;
using namespace hdssl::data;

namespace {

std::vector<float> random_patch(Dims3 d, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> p(size_t(d[0] * d[1] * d[2]));
  for (float& x : p) x = float(rng.uniform());
  return p;
}

std::vector<float> block_values(const std::vector<float>& p, Dims3 d, const Box3& b) {
  std::vector<float> v;
  for (int64_t x = 0; x < b.size[0]; ++x)
    for (int64_t y = 0; y < b.size[1]; ++y)
      for (int64_t z = 0; z < b.size[2]; ++z)
        v.push_back(p[size_t(((b.begin[0] + x) * d[1] + b.begin[1] + y) * d[2] + b.begin[2] + z)]);
  return v;
}

bool inside(const Box3& b, int64_t x, int64_t y, int64_t z) {
  return x >= b.begin[0] && x < b.begin[0] + b.size[0] && y >= b.begin[1] && y < b.begin[1] + b.size[1] &&
         z >= b.begin[2] && z < b.begin[2] + b.size[2];
}

}  // namespace

TEST(Sampler, PositivePairsMapToTheSameBodyVoxel) {
  PreprocessedVolume v = test::small_preprocessed(0, {48, 48, 24});
  const Dims3 patch{32, 32, 16};
  Rng rng(9);
  for (int t = 0; t < 200; ++t) {
    PairSample s = sample_pair(v, patch, 256, rng);
    ASSERT_TRUE(v.body.data[size_t(v.image.index(s.anchor[0], s.anchor[1], s.anchor[2]))]) << "anchor outside the body";
    for (int a = 0; a < 3; ++a) {
      for (const Dims3& st : {s.start_a, s.start_b}) {
        ASSERT_GE(st[size_t(a)], 0);
        ASSERT_LE(st[size_t(a)] + patch[size_t(a)], v.image.dims[size_t(a)]);
        ASSERT_LE(st[size_t(a)], s.anchor[size_t(a)]) << "box does not contain the anchor";
        ASSERT_GT(st[size_t(a)] + patch[size_t(a)], s.anchor[size_t(a)]);
      }
    }
    ASSERT_EQ(s.coords_a.size(), 256u);
    std::set<std::array<int32_t, 3>> distinct(s.coords_a.begin(), s.coords_a.end());
    if (s.overlap_body >= 256) EXPECT_EQ(distinct.size(), 256u) << "pairs must be drawn without replacement";
    else EXPECT_EQ(int64_t(distinct.size()), s.overlap_body);
    for (size_t k = 0; k < s.coords_a.size(); ++k) {
      int64_t w[3];
      for (int a = 0; a < 3; ++a) {
        ASSERT_GE(s.coords_a[k][size_t(a)], 0);
        ASSERT_LT(s.coords_a[k][size_t(a)], patch[size_t(a)]);
        ASSERT_GE(s.coords_b[k][size_t(a)], 0);
        ASSERT_LT(s.coords_b[k][size_t(a)], patch[size_t(a)]);
        w[a] = s.coords_a[k][size_t(a)] + s.start_a[size_t(a)];
        ASSERT_EQ(w[a], s.coords_b[k][size_t(a)] + s.start_b[size_t(a)]) << "pair " << k << " points at two voxels";
      }
      ASSERT_TRUE(v.body.data[size_t(v.image.index(w[0], w[1], w[2]))]);
    }
  }
}

TEST(Sampler, FewBodyVoxelsAreDrawnWithReplacementToKeepN) {
  PreprocessedVolume v;
  v.image = Volume({20, 20, 10}, 0.f);
  v.body.dims = v.image.dims;
  v.body.data.assign(size_t(v.image.numel()), 0);
  for (int64_t z = 3; z < 6; ++z) v.body.data[size_t(v.image.index(10, 10, z))] = 1;  // 3 body voxels
  Rng rng(1);
  PairSample s = sample_pair(v, {8, 8, 4}, 50, rng);
  ASSERT_EQ(s.coords_a.size(), 50u);
  std::set<std::array<int32_t, 3>> distinct(s.coords_a.begin(), s.coords_a.end());
  EXPECT_EQ(int64_t(distinct.size()), s.overlap_body);
  EXPECT_LE(s.overlap_body, 3);
}

TEST(Sampler, ExtractPatchCopiesTheBox) {
  Volume v({6, 7, 8});
  for (size_t i = 0; i < v.data.size(); ++i) v.data[i] = float(i);
  std::vector<float> p(3 * 4 * 5);
  extract_patch(v, {2, 1, 3}, {3, 4, 5}, p.data());
  for (int64_t x = 0; x < 3; ++x)
    for (int64_t y = 0; y < 4; ++y)
      for (int64_t z = 0; z < 5; ++z) ASSERT_EQ(p[size_t((x * 4 + y) * 5 + z)], v.at(2 + x, 1 + y, 3 + z));
}

TEST(Augment, ShufflingKeepsTheVoxelMultisetOfEachBlock) {
  const Dims3 d{40, 40, 20};
  auto p = random_patch(d, 1);
  Rng rng(2);
  for (int t = 0; t < 50; ++t) {
    Box3 b{{rng.randint(0, 35), rng.randint(0, 35), rng.randint(0, 18)}, {2 + t % 4, 3, 2}};
    auto before = p;
    shuffle_block(p.data(), d, b, rng);
    auto vb = block_values(before, d, b), va = block_values(p, d, b);
    EXPECT_NE(va, vb) << "a block of distinct values should come out in another order";
    std::sort(vb.begin(), vb.end());
    std::sort(va.begin(), va.end());
    ASSERT_EQ(va, vb);
    for (int64_t x = 0; x < d[0]; ++x)
      for (int64_t y = 0; y < d[1]; ++y)
        for (int64_t z = 0; z < d[2]; ++z)
          if (!inside(b, x, y, z))
            ASSERT_EQ(p[size_t((x * d[1] + y) * d[2] + z)], before[size_t((x * d[1] + y) * d[2] + z)]);
  }
  auto before = p;
  auto blocks = local_pixel_shuffle(p.data(), d, 5000, 20, rng);
  EXPECT_EQ(blocks.size(), 5000u);
  EXPECT_EQ(blocks[0].size, (Dims3{2, 2, 1}));
  auto a = p, b = before;
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  EXPECT_EQ(a, b);
  EXPECT_NE(p, before);
}

TEST(Augment, BezierMapIsMonotoneAndMapsUnitIntervalOntoItself) {
  Rng rng(5);
  int non_identity = 0;
  for (int t = 0; t < 200; ++t) {
    BezierMap f = BezierMap::random(rng);
    EXPECT_EQ(f(0.f), 0.f);
    EXPECT_EQ(f(1.f), 1.f);
    float prev = -1, maxdiff = 0;
    for (int i = 0; i <= 10000; ++i) {
      float x = float(i) / 10000.f, y = f(x);
      ASSERT_GE(y, prev) << "not monotone at " << x;
      ASSERT_GE(y, 0.f);
      ASSERT_LE(y, 1.f);
      maxdiff = std::max(maxdiff, std::fabs(y - x));
      prev = y;
    }
    non_identity += maxdiff > 0.05f;
  }
  EXPECT_GT(non_identity, 100);
  BezierMap id({1.0 / 3, 1.0 / 3}, {2.0 / 3, 2.0 / 3});  // control points on the diagonal: the identity
  for (int i = 0; i <= 100; ++i) EXPECT_NEAR(id(float(i) / 100.f), float(i) / 100.f, 2e-3);
}

TEST(Augment, InpaintingBoxesStayInsideWithTheirMargin) {
  const Dims3 d{128, 128, 32};
  Rng rng(7);
  int total = 0;
  for (int t = 0; t < 50; ++t) {
    std::vector<float> p(size_t(d[0] * d[1] * d[2]), 2.f);  // 2 is outside the noise range [0, 1)
    auto boxes = inpaint(p.data(), d, 30, 0.95, rng);
    EXPECT_LE(boxes.size(), 30u);
    total += int(boxes.size());
    for (const Box3& b : boxes)
      for (int a = 0; a < 3; ++a) {
        ASSERT_GE(b.size[size_t(a)], d[size_t(a)] / 10);
        ASSERT_LT(b.size[size_t(a)], d[size_t(a)] / 5);
        ASSERT_GE(b.begin[size_t(a)], 3);
        ASSERT_LE(b.begin[size_t(a)] + b.size[size_t(a)], d[size_t(a)] - 3);
      }
    for (int64_t x = 0; x < d[0]; ++x)
      for (int64_t y = 0; y < d[1]; ++y)
        for (int64_t z = 0; z < d[2]; ++z) {
          bool in = std::any_of(boxes.begin(), boxes.end(), [&](const Box3& b) { return inside(b, x, y, z); });
          float v = p[size_t((x * d[1] + y) * d[2] + z)];
          if (in) { ASSERT_GE(v, 0.f); ASSERT_LT(v, 1.f); }
          else ASSERT_EQ(v, 2.f);
        }
  }
  EXPECT_GT(total, 50 * 8) << "with p = 0.95 the mean number of boxes is about 15";
}

TEST(Augment, EachLocalAugmentationIsSwitchable) {
  const Dims3 d{40, 40, 20};
  const auto orig = random_patch(d, 3);
  LocalAugConfig none;
  none.shuffle = none.bezier = none.inpaint = false;
  auto p = orig;
  Rng r0(1);
  augment_local(p.data(), d, none, r0);
  EXPECT_EQ(p, orig);

  LocalAugConfig shuffle_only = none;
  shuffle_only.shuffle = true;
  shuffle_only.shuffle_p = 1;
  p = orig;
  Rng r1(1);
  augment_local(p.data(), d, shuffle_only, r1);
  auto a = p, b = orig;
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  EXPECT_EQ(a, b);
  EXPECT_NE(p, orig);

  LocalAugConfig bezier_only = none;
  bezier_only.bezier = true;
  bezier_only.bezier_p = 1;
  p = orig;
  Rng r2(2);
  augment_local(p.data(), d, bezier_only, r2);
  EXPECT_NE(p, orig);
  for (size_t i = 1; i < p.size(); ++i)  // a monotone map keeps the order of every pair of voxels
    if (orig[i - 1] < orig[i]) ASSERT_LE(p[i - 1], p[i]);

  // Switching shuffling off leaves the Bezier and in-painting draws unchanged (their own streams).
  LocalAugConfig all, no_shuffle;
  all.shuffle_p = 1;
  no_shuffle.shuffle = false;
  auto x = orig, y = orig;
  Rng ra(4), rb(4);
  augment_local(x.data(), d, all, ra);
  augment_local(y.data(), d, no_shuffle, rb);
  int64_t same_noise = 0;
  for (size_t i = 0; i < x.size(); ++i) same_noise += (x[i] == y[i] && x[i] != orig[i]);
  EXPECT_GT(same_noise, 0);
}

TEST(Augment, Vox2vecWindowBlurAndNoise) {
  const Dims3 d{16, 16, 6};
  // A volume varying only along z: the axial blur must leave it unchanged.
  std::vector<float> p(size_t(d[0] * d[1] * d[2]));
  for (size_t i = 0; i < p.size(); ++i) p[i] = float(i % 6) / 5.f;
  auto q = p;
  blur_axial(q.data(), d, 1.2);
  for (size_t i = 0; i < p.size(); ++i) ASSERT_NEAR(q[i], p[i], 1e-6);
  // A delta in one slice spreads within that slice only and keeps its mass.
  std::vector<float> delta(p.size(), 0.f);
  delta[size_t((8 * 16 + 8) * 6 + 2)] = 1.f;
  blur_axial(delta.data(), d, 1.0);
  double mass = 0;
  for (size_t i = 0; i < delta.size(); ++i) {
    if (i % 6 != 2) ASSERT_EQ(delta[i], 0.f);
    mass += delta[i];
  }
  EXPECT_NEAR(mass, 1.0, 1e-5);
  // The window alone maps into [0, 1] and changes the image.
  Vox2vecAugConfig w;
  w.blur_sharpen = w.noise = false;
  w.window_p = 1;
  auto r = random_patch(d, 8);
  auto before = r;
  Rng rng(3);
  augment_vox2vec(r.data(), d, w, rng);
  EXPECT_NE(r, before);
  for (float v : r) { ASSERT_GE(v, 0.f); ASSERT_LE(v, 1.f); }
  // Not for MRI.
  w.ct = false;
  r = before;
  augment_vox2vec(r.data(), d, w, rng);
  EXPECT_EQ(r, before);
}

// Issue 11 (e): a twentieth of 32x32x16 is 1x1x1, a no-op; the minimum block side keeps the shuffle alive.
TEST(Augment, PixelShuffleMinimumBlockSide) {
  const Dims3 d{32, 32, 16};
  auto p = random_patch(d, 21);
  auto before = p;
  Rng rng(4);
  auto tiny = local_pixel_shuffle(p.data(), d, 200, 20, Dims3{1, 1, 1}, rng);
  EXPECT_EQ(tiny[0].size, (Dims3{1, 1, 1}));
  EXPECT_EQ(p, before) << "1x1x1 blocks cannot change a patch";
  auto blocks = local_pixel_shuffle(p.data(), d, 200, 20, Dims3{2, 2, 1}, rng);
  EXPECT_EQ(blocks[0].size, (Dims3{2, 2, 1}));
  EXPECT_NE(p, before);
  // At the paper's patch the minimum changes nothing: 128/20 = 6, 32/20 = 1.
  const Dims3 big{128, 128, 32};
  std::vector<float> q(size_t(128 * 128 * 32), 0.f);
  EXPECT_EQ(local_pixel_shuffle(q.data(), big, 1, 20, LocalAugConfig{}.shuffle_block_min, rng)[0].size,
            (Dims3{6, 6, 1}));
  // And augment_local uses it: with only the shuffle on, the default config changes a 32x32x16 patch.
  LocalAugConfig c;
  c.bezier = c.inpaint = false;
  c.shuffle_p = 1;
  auto r = before;
  Rng r2(5);
  augment_local(r.data(), d, c, r2);
  EXPECT_NE(r, before);
}

// Issue 11 (f): program order ends with the window and its clip; the noise is in HU of the data window.
TEST(Augment, Vox2vecProgramOrderClipsLastAndScalesNoiseInHu) {
  const Dims3 d{16, 16, 6};
  Vox2vecAugConfig c;
  ASSERT_TRUE(c.program_order);
  c.blur_sharpen = false;
  c.noise_p = 1;
  c.window_p = 0;  // no random window: the final clip to the data window alone
  auto p0 = random_patch(d, 9);
  for (size_t i = 0; i < p0.size(); i += 7) p0[i] = (i / 7) % 2 ? 1.f : 0.f;  // values at both ends of [0, 1]
  auto p = p0;
  Rng rng(1);
  augment_vox2vec(p.data(), d, c, rng);
  EXPECT_NE(p, p0);
  for (float v : p) { ASSERT_GE(v, 0.f); ASSERT_LE(v, 1.f); }
  Vox2vecAugConfig legacy = c;
  legacy.program_order = false;
  bool outside = false;
  for (uint64_t s = 0; s < 10 && !outside; ++s) {
    auto q = p0;
    Rng r(s);
    augment_vox2vec(q.data(), d, legacy, r);
    for (float v : q) outside |= v < 0.f || v > 1.f;
  }
  EXPECT_TRUE(outside) << "the legacy order adds noise after the clip";
  // Noise of up to 30 HU: in the program window [-175, 250] that is up to 30/425 of [0, 1], and it is
  // more than the 30/2350 of the paper's window for most draws.
  c.data_window_lo = -175;
  c.data_window_hi = 250;
  int above = 0;
  for (uint64_t s = 0; s < 20; ++s) {
    std::vector<float> q(p0.size(), 0.5f);
    Rng r(100 + s);
    augment_vox2vec(q.data(), d, c, r);
    double ss = 0;
    for (float v : q) ss += (v - 0.5) * (v - 0.5);
    const double sd = std::sqrt(ss / double(q.size()));
    EXPECT_LT(sd, 1.15 * 30.0 / 425.0);
    above += sd > 1.15 * 30.0 / 2350.0;
  }
  EXPECT_GE(above, 10);
}
