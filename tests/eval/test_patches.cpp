// The labeled patch sampler: one-hot targets match the labels, foreground patches are centred on their
// class, batches are deterministic per (seed, k), small volumes are padded.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/random.h"
#include "eval/patches.h"

using namespace hdssl;
using namespace hdssl::eval;

struct Case {
  data::Volume image, labels;
};

static Case make_case(data::Dims3 d, uint64_t seed) {
  Case c{data::Volume(d), data::Volume(d)};
  Rng rng(seed);
  for (float& v : c.image.data) v = rng.uniformf();
  // class 1: a small cube near a corner; class 2: one voxel
  for (int64_t x = 1; x < 3; ++x)
    for (int64_t y = 1; y < 3; ++y)
      for (int64_t z = 0; z < 2; ++z) c.labels.at(x, y, z) = 1;
  c.labels.at(d[0] - 2, d[1] - 2, d[2] - 1) = 2;
  return c;
}

TEST(PatchSampler, TargetsMatchLabelsAndImage) {
  Case c = make_case({20, 18, 10}, 1);
  PatchSamplerConfig cfg;
  cfg.patch = {8, 8, 4};
  cfg.classes = 2;
  cfg.fg_prob = 0.5;
  cfg.seed = 3;
  PatchSampler s({&c.image}, {&c.labels}, cfg);
  PatchBatch b = s.batch(5, 6);
  ASSERT_EQ(b.image.shape(), (Shape{6, 1, 8, 8, 4}));
  ASSERT_EQ(b.target.shape(), (Shape{6, 2, 8, 8, 4}));
  std::vector<float> img = b.image.to_vector<float>(), tgt = b.target.to_vector<float>();
  const int64_t pn = 8 * 8 * 4;
  for (int i = 0; i < 6; ++i) {
    const data::Dims3 st = b.starts[size_t(i)];
    for (int a = 0; a < 3; ++a) {
      EXPECT_GE(st[a], 0);
      EXPECT_LE(st[a] + cfg.patch[a], c.image.dims[a]);
    }
    for (int64_t x = 0; x < 8; ++x)
      for (int64_t y = 0; y < 8; ++y)
        for (int64_t z = 0; z < 4; ++z) {
          const int64_t o = (x * 8 + y) * 4 + z;
          EXPECT_EQ(img[size_t(i * pn + o)], c.image.at(st[0] + x, st[1] + y, st[2] + z));
          const int l = int(c.labels.at(st[0] + x, st[1] + y, st[2] + z));
          for (int k = 0; k < 2; ++k) EXPECT_EQ(tgt[size_t((i * 2 + k) * pn + o)], l == k + 1 ? 1.f : 0.f);
        }
  }
}

TEST(PatchSampler, ForegroundPatchesContainTheirClassAndAreDeterministic) {
  Case c = make_case({40, 40, 20}, 2);
  PatchSamplerConfig cfg;
  cfg.patch = {8, 8, 4};
  cfg.classes = 2;
  cfg.fg_prob = 1.0;
  PatchSampler s({&c.image}, {&c.labels}, cfg);
  int fg_patches = 0;
  for (uint64_t k = 0; k < 20; ++k) {
    PatchBatch b = s.batch(k, 2);
    std::vector<float> t = b.target.to_vector<float>();
    for (int i = 0; i < 2; ++i) {
      EXPECT_TRUE(b.foreground[size_t(i)]);
      double sum = 0;
      for (int64_t v = 0; v < 2 * 8 * 8 * 4; ++v) sum += t[size_t(i * 2 * 8 * 8 * 4 + v)];
      fg_patches += sum > 0;
    }
    EXPECT_EQ(b.target.to_vector<float>(), s.batch(k, 2).target.to_vector<float>());
  }
  EXPECT_EQ(fg_patches, 40);
  // With fg_prob 0 on a volume 5x larger than the patch per axis, most patches miss both tiny classes.
  cfg.fg_prob = 0.0;
  PatchSampler u({&c.image}, {&c.labels}, cfg);
  int empty = 0;
  for (uint64_t k = 0; k < 20; ++k) {
    std::vector<float> t = u.batch(k, 1).target.to_vector<float>();
    double sum = 0;
    for (float v : t) sum += v;
    empty += sum == 0;
  }
  EXPECT_GT(empty, 10);
}

TEST(PatchSampler, PadsVolumesSmallerThanThePatch) {
  Case c = make_case({5, 6, 3}, 3);
  PatchSamplerConfig cfg;
  cfg.patch = {8, 8, 4};
  cfg.classes = 2;
  cfg.fg_prob = 0.0;
  PatchSampler s({&c.image}, {&c.labels}, cfg);
  PatchBatch b = s.batch(0, 1);
  std::vector<float> img = b.image.to_vector<float>();
  double in = 0, total = 0;
  for (float v : c.image.data) in += v;
  for (float v : img) total += v;
  EXPECT_NEAR(total, in, 1e-3);  // the whole volume is inside the patch, the rest is zero
}
