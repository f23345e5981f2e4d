// PretrainLoader: batch shapes, positive pairs that map to the same voxel, and the same batches for the same
// seed whatever the number of threads (and after seek).
#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <cstring>
#include <thread>

#include "data/dataset.h"
#include "data/loader.h"
#include "tests/data/test_util.h"

using namespace hdssl;
using namespace hdssl::data;

namespace {

std::vector<PreprocessedVolume> volumes() {
  static std::vector<PreprocessedVolume> v = {test::small_preprocessed(0), test::small_preprocessed(1)};
  return v;
}

PretrainConfig small_config(PretrainConfig::Aug aug) {
  PretrainConfig c;
  c.patch = {32, 32, 16};
  c.batch_pairs = 3;
  c.voxels_per_pair = 64;
  c.aug = aug;
  c.seed = 42;
  return c;
}

bool same(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}
bool same(const PretrainBatch& a, const PretrainBatch& b) {
  return same(a.view_a, b.view_a) && same(a.view_b, b.view_b) && same(a.target_a, b.target_a) &&
         same(a.target_b, b.target_b) && same(a.coords_a, b.coords_a) && same(a.coords_b, b.coords_b);
}

}  // namespace

TEST(Loader, ShapesAndPositivePairsPointAtTheSameVoxel) {
  auto vols = volumes();
  PretrainLoader loader(vols, small_config(PretrainConfig::Aug::Local), 2, 2);
  PretrainBatch b = loader.next();
  EXPECT_EQ(b.view_a.shape(), (Shape{3, 1, 32, 32, 16}));
  EXPECT_EQ(b.target_b.shape(), (Shape{3, 1, 32, 32, 16}));
  EXPECT_EQ(b.coords_a.shape(), (Shape{3, 64, 3}));
  EXPECT_EQ(b.coords_a.dtype(), DType::I32);
  const int32_t* ca = b.coords_a.data<int32_t>();
  const int32_t* cb = b.coords_b.data<int32_t>();
  const float* ta = b.target_a.data<float>();
  const float* tb = b.target_b.data<float>();
  const int64_t P = 32 * 32 * 16;
  for (int p = 0; p < 3; ++p) {
    const PreprocessedVolume& v = vols[size_t(b.volume[size_t(p)])];
    for (int k = 0; k < 64; ++k) {
      const int32_t* a = ca + (p * 64 + k) * 3;
      const int32_t* c = cb + (p * 64 + k) * 3;
      for (int ax = 0; ax < 3; ++ax) {
        ASSERT_GE(a[ax], 0);
        ASSERT_LT(a[ax], b.view_a.size(2 + ax));
        ASSERT_EQ(a[ax] + b.start_a[size_t(p)][size_t(ax)], c[ax] + b.start_b[size_t(p)][size_t(ax)]);
      }
      int64_t x = a[0] + b.start_a[size_t(p)][0], y = a[1] + b.start_a[size_t(p)][1], z = a[2] + b.start_a[size_t(p)][2];
      EXPECT_TRUE(v.body.data[size_t(v.image.index(x, y, z))]) << "positive pair outside the body";
      // Targets are un-augmented copies of the volume: both patches hold the volume's value there.
      EXPECT_EQ(ta[p * P + (a[0] * 32 + a[1]) * 16 + a[2]], v.image.at(x, y, z));
      EXPECT_EQ(tb[p * P + (c[0] * 32 + c[1]) * 16 + c[2]], v.image.at(x, y, z));
    }
  }
  EXPECT_EQ(loader.position(), 1u);
}

TEST(Loader, SameBatchesWhateverTheThreadCount) {
  for (auto aug : {PretrainConfig::Aug::Local, PretrainConfig::Aug::Vox2vec}) {
    PretrainLoader l0(volumes(), small_config(aug), 0, 1), l1(volumes(), small_config(aug), 1, 1),
        l3(volumes(), small_config(aug), 3, 3);
    for (int k = 0; k < 4; ++k) {
      PretrainBatch a = l0.next(), b = l1.next(), c = l3.next();
      EXPECT_TRUE(same(a, b)) << "batch " << k << " differs between 0 and 1 worker threads";
      EXPECT_TRUE(same(a, c)) << "batch " << k << " differs between 0 and 3 worker threads";
      EXPECT_FALSE(same(a.view_a, a.target_a)) << "augmentation changed nothing";
    }
  }
}

TEST(Loader, SeekResumesAtTheSameBatch) {
  PretrainLoader ref(volumes(), small_config(PretrainConfig::Aug::Local), 2, 2);
  std::vector<PretrainBatch> first;
  for (int k = 0; k < 5; ++k) first.push_back(ref.next());
  PretrainLoader l(volumes(), small_config(PretrainConfig::Aug::Local), 2, 3);
  l.next();
  l.seek(3);
  EXPECT_EQ(l.position(), 3u);
  EXPECT_TRUE(same(l.next(), first[3]));
  EXPECT_TRUE(same(l.next(), first[4]));
  l.seek(1);
  EXPECT_TRUE(same(l.next(), first[1]));
  EXPECT_FALSE(same(first[1], first[2]));
}

TEST(Loader, MemoryIsBoundedByPrefetch) {
  PretrainLoader l(volumes(), small_config(PretrainConfig::Aug::Local), 3, 2);
  for (int k = 0; k < 6; ++k) {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));  // let the workers run ahead as far as they may
    EXPECT_LE(l.batches_in_memory(), 2u);
    l.next();
  }
  for (int t = 0; t < 500 && l.batches_in_memory() < 2; ++t) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(l.batches_in_memory(), 2u) << "workers should have filled the prefetch window";
}

TEST(Loader, DifferentSeedsGiveDifferentBatches) {
  auto c1 = small_config(PretrainConfig::Aug::None), c2 = c1;
  c2.seed = 43;
  PretrainLoader a(volumes(), c1, 0), b(volumes(), c2, 0);
  PretrainBatch x = a.next(), y = b.next();
  EXPECT_FALSE(same(x.coords_a, y.coords_a));
  EXPECT_TRUE(same(x.view_a, x.target_a)) << "Aug::None must leave the views un-augmented";
}

TEST(Loader, RunsOnInMemoryPhantomsAtThePapersPatchSize) {
  PhantomConfig pc;
  pc.spacing = {2.0, 2.0, 4.0};
  PreprocessConfig cfg = PreprocessConfig::ct();
  auto vols = phantom_volumes(2, 3, pc, cfg, 2);
  ASSERT_EQ(vols.size(), 2u);
  EXPECT_EQ(vols[0].image.spacing, cfg.spacing);
  auto again = phantom_volumes(2, 3, pc, cfg, 1);
  EXPECT_EQ(vols[1].image.data, again[1].image.data) << "thread count must not matter";
  PretrainConfig c;  // 128 x 128 x 32, 10 pairs, 1024 positives
  c.batch_pairs = 2;
  PretrainLoader loader(std::move(vols), c, 2, 1);
  PretrainBatch b = loader.next();
  EXPECT_EQ(b.view_a.shape(), (Shape{2, 1, 128, 128, 32}));
  EXPECT_EQ(b.coords_b.shape(), (Shape{2, 1024, 3}));
}

TEST(Loader, RefusesVolumesSmallerThanThePatch) {
  auto c = small_config(PretrainConfig::Aug::None);
  c.patch = {512, 32, 16};
  EXPECT_THROW(PretrainLoader(volumes(), c, 0), DataError);
}

// Issue 11 (a): the published program cuts all B pairs of a step from one volume; PerPair draws one per pair.
TEST(Loader, OneVolumePerStepCutsEveryPairFromTheSameVolume) {
  PretrainConfig c = small_config(PretrainConfig::Aug::None);
  c.batch_pairs = 4;
  ASSERT_EQ(c.volumes, PretrainConfig::Volumes::OneVolume) << "the program's batch composition is the default";
  PretrainLoader one(volumes(), c, 0, 1);
  std::set<int> seen;
  for (int k = 0; k < 12; ++k) {
    PretrainBatch b = one.next();
    for (int p = 1; p < 4; ++p) EXPECT_EQ(b.volume[size_t(p)], b.volume[0]) << "batch " << k << " mixes volumes";
    seen.insert(b.volume[0]);
  }
  EXPECT_EQ(seen.size(), 2u) << "both volumes should be drawn over 12 steps";
  c.volumes = PretrainConfig::Volumes::PerPair;
  PretrainLoader per(volumes(), c, 0, 1);
  int mixed = 0;
  for (int k = 0; k < 12; ++k) {
    PretrainBatch b = per.next();
    for (int p = 1; p < 4; ++p) mixed += b.volume[size_t(p)] != b.volume[0];
  }
  EXPECT_GT(mixed, 0) << "per-pair volumes should mix patients within a batch";
}

TEST(Loader, OneVolumePerStepIsTheSameWhateverTheThreadCount) {
  for (auto mode : {PretrainConfig::Volumes::OneVolume, PretrainConfig::Volumes::PerPair}) {
    PretrainConfig c = small_config(PretrainConfig::Aug::Local);
    c.volumes = mode;
    PretrainLoader l0(volumes(), c, 0, 1), l3(volumes(), c, 3, 3);
    for (int k = 0; k < 4; ++k) EXPECT_TRUE(same(l0.next(), l3.next())) << "batch " << k;
  }
}

// Data-parallel groups (issue 12, dist/rank_streams.h): group r's pair b is global item r * B + b. Per pair,
// the groups of N ranks are exactly the batch of one loader with batch N * B; with one volume per step each
// group draws its own volume (over a few steps the two groups' volumes differ at least once).
TEST(Loader, RankGroupsAreTheGlobalItemsAndDrawTheirOwnVolume) {
  auto slice = [](const Tensor& t, int64_t first, int64_t count) {
    const size_t row = t.nbytes() / size_t(t.shape()[0]);
    const char* p = static_cast<const char*>(t.raw());
    return std::vector<char>(p + size_t(first) * row, p + size_t(first + count) * row);
  };
  auto whole = [](const Tensor& t) {
    const char* p = static_cast<const char*>(t.raw());
    return std::vector<char>(p, p + t.nbytes());
  };
  PretrainConfig c = small_config(PretrainConfig::Aug::Local);
  c.volumes = PretrainConfig::Volumes::PerPair;
  c.batch_pairs = 4;
  PretrainLoader global(volumes(), c, 0, 1);
  c.batch_pairs = 2;
  PretrainLoader g0(volumes(), c, 0, 1);
  c.group = 1;
  PretrainLoader g1(volumes(), c, 0, 1);
  for (int k = 0; k < 3; ++k) {
    PretrainBatch all = global.next(), b0 = g0.next(), b1 = g1.next();
    for (auto m : {&PretrainBatch::view_a, &PretrainBatch::view_b, &PretrainBatch::target_a,
                   &PretrainBatch::coords_b}) {
      EXPECT_EQ(slice(all.*m, 0, 2), whole(b0.*m)) << "batch " << k << ", group 0";
      EXPECT_EQ(slice(all.*m, 2, 2), whole(b1.*m)) << "batch " << k << ", group 1";
    }
  }
  c = small_config(PretrainConfig::Aug::None);  // one volume per step and group; group 0 = the plain loader
  PretrainConfig c0 = c, c1 = c;
  c0.group = 0;
  c1.group = 1;
  PretrainLoader plain(volumes(), c, 0, 1), r0(volumes(), c0, 0, 1), r1(volumes(), c1, 0, 1);
  int differ = 0;
  for (int k = 0; k < 12; ++k) {
    PretrainBatch p = plain.next(), a = r0.next(), b = r1.next();
    EXPECT_TRUE(same(p, a)) << "batch " << k;
    for (size_t i = 1; i < b.volume.size(); ++i) EXPECT_EQ(b.volume[i], b.volume[0]);
    differ += a.volume[0] != b.volume[0];
  }
  EXPECT_GT(differ, 0) << "each rank should draw its own volume";
}
