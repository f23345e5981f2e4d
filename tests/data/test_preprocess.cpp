// Orientation to RAS and back, resampling, the CT/MRI presets, crop/pad, the body mask and the mapping of a
// label map back to the original grid.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "data/nifti.h"
#include "data/orient.h"
#include "data/preprocess.h"
#include "data/resample.h"
#include "engine/random.h"
#include "tests/data/test_util.h"

using namespace hdssl;
using namespace hdssl::data;

namespace {

// A volume whose voxel axes are a permutation/flip of RAS, with distinct random values.
Volume oriented_volume(const std::array<int, 3>& perm, const std::array<bool, 3>& flip, uint64_t seed) {
  Dims3 d{5, 6, 7};
  Volume v(d);
  Rng rng(seed);
  for (float& x : v.data) x = float(rng.uniform());
  Mat44 a{};
  a[3][3] = 1;
  const double sp[3] = {0.8, 1.2, 2.5};
  for (int ax = 0; ax < 3; ++ax) a[size_t(perm[size_t(ax)])][size_t(ax)] = (flip[size_t(ax)] ? -1 : 1) * sp[ax];
  a[0][3] = 10; a[1][3] = -20; a[2][3] = 30;
  v.affine = a;
  v.spacing = affine_spacing(a);
  return v;
}

std::array<double, 3> world(const Mat44& a, double i, double j, double k) {
  return {a[0][0] * i + a[0][1] * j + a[0][2] * k + a[0][3], a[1][0] * i + a[1][1] * j + a[1][2] * k + a[1][3],
          a[2][0] * i + a[2][1] * j + a[2][2] * k + a[2][3]};
}

}  // namespace

TEST(Orient, ToRasAndBackIsTheIdentityForAll48Orientations) {
  std::array<int, 3> perm{0, 1, 2};
  int count = 0;
  do {
    for (int f = 0; f < 8; ++f) {
      std::array<bool, 3> flip{bool(f & 1), bool(f & 2), bool(f & 4)};
      Volume v = oriented_volume(perm, flip, uint64_t(count));
      OrientRecord rec;
      Volume ras = to_ras(v, &rec);
      EXPECT_EQ(orientation_code(ras.affine), "RAS");
      for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 3; ++c) if (r != c) EXPECT_EQ(ras.affine[size_t(r)][size_t(c)], 0.0);
      // Every RAS voxel holds the value of the original voxel at the same world position.
      Mat44 inv = inverse44(v.affine);
      for (int64_t x = 0; x < ras.dims[0]; ++x)
        for (int64_t y = 0; y < ras.dims[1]; ++y)
          for (int64_t z = 0; z < ras.dims[2]; ++z) {
            auto w = world(ras.affine, double(x), double(y), double(z));
            auto o = world(inv, w[0], w[1], w[2]);
            ASSERT_EQ(ras.at(x, y, z), v.at(std::llround(o[0]), std::llround(o[1]), std::llround(o[2])));
          }
      Volume back = undo_orientation(ras, rec);
      EXPECT_EQ(back.dims, v.dims);
      EXPECT_EQ(back.data, v.data);
      for (int r = 0; r < 4; ++r)
        for (int c = 0; c < 4; ++c)
          EXPECT_NEAR(back.affine[size_t(r)][size_t(c)], v.affine[size_t(r)][size_t(c)], 1e-12);
      ++count;
    }
  } while (std::next_permutation(perm.begin(), perm.end()));
  EXPECT_EQ(count, 48);
}

TEST(Resample, LinearReproducesALinearRampAndUpdatesTheAffine) {
  Volume v({10, 12, 8});
  v.set_diagonal_affine({2.0, 2.0, 4.0}, {5, 6, 7});
  for (int64_t x = 0; x < 10; ++x)
    for (int64_t y = 0; y < 12; ++y)
      for (int64_t z = 0; z < 8; ++z) v.at(x, y, z) = float(3 * x - 2 * y + 0.5 * z);
  Volume r = resample_to_spacing(v, {1.0, 1.0, 2.0}, Interp::Linear);
  EXPECT_EQ(r.dims, (Dims3{20, 24, 16}));
  EXPECT_EQ(r.spacing, (std::array<double, 3>{1.0, 1.0, 2.0}));
  Mat44 inv = inverse44(v.affine);
  for (int64_t x = 1; x < 19; ++x)  // away from the clamped border
    for (int64_t y = 1; y < 23; ++y)
      for (int64_t z = 1; z < 15; ++z) {
        auto w = world(r.affine, double(x), double(y), double(z));
        auto o = world(inv, w[0], w[1], w[2]);  // the old continuous voxel coordinate of this voxel centre
        ASSERT_NEAR(r.at(x, y, z), 3 * o[0] - 2 * o[1] + 0.5 * o[2], 1e-4);
      }
}

TEST(Resample, NearestKeepsLabelValuesAndExactUpDownRoundTrip) {
  Volume v({9, 8, 7});
  v.set_diagonal_affine({3.0, 3.0, 5.0});
  Rng rng(3);
  for (float& x : v.data) x = float(rng.randint(0, 14));
  Volume up = resample_to_spacing(v, {1.5, 1.5, 2.5}, Interp::Nearest);
  std::set<float> a(v.data.begin(), v.data.end()), b(up.data.begin(), up.data.end());
  EXPECT_EQ(a, b);
  Volume down = resample_scale(up, v.dims, {2.0, 2.0, 2.0}, Interp::Nearest);
  EXPECT_EQ(down.data, v.data);
}

TEST(Preprocess, CtPresetOnAPhantom) {
  Phantom ph = make_phantom(test::small_phantom_config(), 11, 0);
  PreprocessConfig cfg = PreprocessConfig::ct();
  cfg.spacing = {2.0, 2.0, 4.0};
  cfg.min_size = {64, 64, 32};
  PreprocessedVolume p = preprocess(test::as_nifti(ph.image, "ct"), cfg);
  EXPECT_EQ(p.image.spacing, cfg.spacing);
  EXPECT_EQ(orientation_code(p.image.affine), "RAS");
  for (int a = 0; a < 3; ++a) EXPECT_GE(p.image.dims[size_t(a)], cfg.min_size[size_t(a)]);
  auto [mn, mx] = std::minmax_element(p.image.data.begin(), p.image.data.end());
  EXPECT_GE(*mn, 0.f);
  EXPECT_LE(*mx, 1.f);
  EXPECT_GT(*mx, 0.8f) << "bone should be near the top of the window";
  // Cropped to the body: the crop is much smaller than the resampled field of view in x and y.
  EXPECT_LT(p.image.dims[0], p.record.resampled_dims[0]);
  EXPECT_LT(p.image.dims[1], p.record.resampled_dims[1]);
  int64_t body = 0;
  for (uint8_t b : p.body.data) body += b;
  EXPECT_GT(body, p.image.numel() / 3);
  EXPECT_LT(body, p.image.numel());
  // The world position of a voxel is preserved through the chain: the preprocessed voxel centre maps to the
  // same world point as the original continuous coordinate (checked on the affine composition).
  Mat44 orig_inv = inverse44(ph.image.affine);
  auto w = world(p.image.affine, 0, 0, 0);
  auto o = world(orig_inv, w[0], w[1], w[2]);
  // x, y are flipped (LPS file): preprocessed voxel 0 lies at the flipped end of the original axes.
  EXPECT_GT(o[0], 0);
  EXPECT_GT(o[1], 0);
}

TEST(Preprocess, LabelsFollowTheImageAndRestoreToTheOriginalGrid) {
  Phantom ph = make_phantom(test::small_phantom_config(), 12, 0);
  PreprocessConfig cfg = PreprocessConfig::ct();
  cfg.spacing = {1.5, 1.5, 2.5};  // exactly half the phantom's spacing: nearest up/down is exact
  cfg.min_size = {32, 32, 16};
  PreprocessedVolume p = preprocess(test::as_nifti(ph.image, "ct"), cfg);
  Volume lab = preprocess_labels(ph.labels, p.record);
  EXPECT_EQ(lab.dims, p.image.dims);
  // Organs lie inside the body mask (allow the one-voxel partial-volume rim).
  int64_t organ = 0, organ_in_body = 0;
  for (size_t i = 0; i < lab.data.size(); ++i)
    if (lab.data[i] > 0) { ++organ; organ_in_body += p.body.data[i]; }
  EXPECT_GT(organ, 1000);
  EXPECT_GT(double(organ_in_body), 0.99 * double(organ));
  Volume back = restore_labels(lab, p.record);
  EXPECT_EQ(back.dims, ph.labels.dims);
  EXPECT_EQ(back.data, ph.labels.data) << "restore_labels(preprocess_labels(L)) must give L back";
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c)
      EXPECT_NEAR(back.affine[size_t(r)][size_t(c)], ph.labels.affine[size_t(r)][size_t(c)], 1e-9);
}

TEST(Preprocess, ImagesRestoreToTheOriginalGrid) {
  // A smooth image survives preprocess -> restore_image up to interpolation error; the crop is filled.
  Volume v({40, 36, 20});
  v.set_diagonal_affine({2.0, 2.0, 4.0}, {3, 4, 5});
  v.affine[0][0] = -2.0;  // L in x: exercises the flip as well
  v.spacing = affine_spacing(v.affine);
  for (int64_t x = 0; x < 40; ++x)
    for (int64_t y = 0; y < 36; ++y)
      for (int64_t z = 0; z < 20; ++z) v.at(x, y, z) = float(-200 + 10 * x + 5 * y + 3 * z);
  PreprocessConfig cfg = PreprocessConfig::ct();
  cfg.spacing = {1.0, 1.0, 2.0};
  cfg.min_size = {8, 8, 8};
  cfg.ct_clip_lo = -10000;  // keep the ramp unclipped
  cfg.ct_clip_hi = 10000;
  cfg.ct_crop_hu = -1e9;    // no crop
  PreprocessedVolume p = preprocess(test::as_nifti(v, "ramp"), cfg);
  Volume back = restore_image(p.image, p.record);
  ASSERT_EQ(back.dims, v.dims);
  for (int64_t x = 1; x < 39; ++x)
    for (int64_t y = 1; y < 35; ++y)
      for (int64_t z = 1; z < 19; ++z)
        ASSERT_NEAR(back.at(x, y, z) * 20000.0 - 10000.0, v.at(x, y, z), 0.05) << x << "," << y << "," << z;
}

TEST(Preprocess, MriPresetClipsPercentilesAndScales) {
  PhantomConfig pc = test::small_phantom_config();
  pc.modality = Modality::MRI;
  Phantom ph = make_phantom(pc, 5, 0);
  PreprocessConfig cfg = PreprocessConfig::mri();
  cfg.spacing = {3.0, 3.0, 3.0};
  cfg.min_size = {16, 16, 16};
  PreprocessedVolume p = preprocess(test::as_nifti(ph.image, "mri"), cfg);
  auto [mn, mx] = std::minmax_element(p.image.data.begin(), p.image.data.end());
  EXPECT_EQ(*mn, 0.f);
  EXPECT_EQ(*mx, 1.f);
  int64_t top = std::count(p.image.data.begin(), p.image.data.end(), 1.f);
  EXPECT_GT(top, 0);
  EXPECT_LT(double(top), 0.01 * double(p.image.numel())) << "only the top 0.1 % is clipped";
}

TEST(Preprocess, SmallVolumesAreGrownAndPaddedToThePatch) {
  Volume v({10, 10, 6}, -1000.f);
  v.set_diagonal_affine({1, 1, 2});
  for (int64_t x = 3; x < 7; ++x)
    for (int64_t y = 3; y < 7; ++y)
      for (int64_t z = 1; z < 5; ++z) v.at(x, y, z) = 40;
  PreprocessConfig cfg = PreprocessConfig::ct();
  cfg.min_size = {16, 8, 8};
  PreprocessedVolume p = preprocess(test::as_nifti(v, "tiny"), cfg);
  EXPECT_EQ(p.image.dims, (Dims3{16, 8, 8}));
  EXPECT_EQ(p.record.crop_begin[0], -3);  // padded 3 voxels on the left (16 - 10 = 6, split evenly)
  EXPECT_EQ(p.record.crop_begin[1], 1);   // grown from the 4-voxel tissue box [3, 7) to 8, centred
  EXPECT_EQ(p.image.at(0, 4, 4), 0.f);    // padding is air (0 after scaling)
  EXPECT_NEAR(p.image.at(3 + 3, 3 - 1 + 1, 2), (40 + 1350) / 2350.0, 1e-6);
}

TEST(BodyMask, FillsInnerAirAndExcludesOutsideAir) {
  Volume v({20, 20, 3}, 0.f);
  for (int64_t x = 0; x < 20; ++x)
    for (int64_t y = 0; y < 20; ++y) {
      double r = std::hypot(double(x) - 9.5, double(y) - 9.5);
      for (int64_t z = 0; z < 3; ++z) v.at(x, y, z) = r < 8 ? (r < 3 ? 0.05f : 0.6f) : 0.f;  // a "lung" inside
    }
  Mask m = body_mask(v, 0.3);
  EXPECT_EQ(m.data[size_t(m.index(10, 10, 1))], 1) << "air enclosed by the body is body";
  EXPECT_EQ(m.data[size_t(m.index(9, 4, 1))], 1);
  EXPECT_EQ(m.data[size_t(m.index(0, 0, 1))], 0);
  EXPECT_EQ(m.data[size_t(m.index(19, 10, 1))], 0);
}

// Issue 11 (d): the CT window is a recorded parameter; the program's abdomen window spreads soft tissue.
TEST(Preprocess, CtWindowByNameIsPartOfTheKeyAndTheResult) {
  PreprocessConfig paper = PreprocessConfig::ct(), program = PreprocessConfig::ct();
  EXPECT_EQ(paper.ct_clip_lo, -1350);
  EXPECT_EQ(paper.ct_clip_hi, 1000);
  program.set_ct_window("program");
  EXPECT_EQ(program.ct_clip_lo, -175);
  EXPECT_EQ(program.ct_clip_hi, 250);
  EXPECT_NE(paper.key(), program.key()) << "the cache key must hold the window";
  PreprocessConfig custom = PreprocessConfig::ct();
  custom.set_ct_window("-100,300");
  EXPECT_EQ(custom.ct_clip_lo, -100);
  EXPECT_EQ(custom.ct_clip_hi, 300);
  custom.set_ct_window("paper");
  EXPECT_EQ(custom.key(), paper.key());
  for (const char* bad : {"", "abdomen", "250,-175", "5,5", "1,2,3", "1,2x"})
    EXPECT_THROW(custom.set_ct_window(bad), DataError) << bad;
  // On a phantom: soft tissue (liver ~ 60 HU, spleen ~ 45 HU, fat ~ -100 HU) spreads over far more of
  // [0, 1] in the program window.
  Phantom ph = make_phantom(test::small_phantom_config(), 11, 0);
  for (PreprocessConfig* c : {&paper, &program}) {
    c->spacing = {3.0, 3.0, 5.0};
    c->min_size = {32, 32, 16};
  }
  PreprocessedVolume a = preprocess(test::as_nifti(ph.image, "ct"), paper),
                     b = preprocess(test::as_nifti(ph.image, "ct"), program);
  ASSERT_EQ(a.image.dims, b.image.dims);
  auto to_hu = [](float v, const PreprocessConfig& c) {
    return c.ct_clip_lo + double(v) * (c.ct_clip_hi - c.ct_clip_lo);
  };
  int checked = 0;
  for (size_t i = 0; i < a.image.data.size(); ++i) {
    const double h = to_hu(a.image.data[i], paper);
    if (h > -100 && h < 200) {
      EXPECT_NEAR(to_hu(b.image.data[i], program), h, 2.0) << "the same HU value, another scale";
      ++checked;
    }
  }
  EXPECT_GT(checked, 100);
}
