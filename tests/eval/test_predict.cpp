// Prediction end to end on a phantom stored in LPS voxel order: the label map is written in the input's
// own grid (same dims, same affine, same orientation code), holds only declared labels, and a trained
// checkpoint reloads into an identical model.
#include <gtest/gtest.h>

#include <filesystem>

#include "data/nifti.h"
#include "data/phantom.h"
#include "models/checkpoint.h"
#include "eval/inference.h"
#include "eval/trainer.h"

using namespace hdssl;
namespace fs = std::filesystem;

static eval::SegmenterMeta tiny_meta() {
  eval::SegmenterMeta m;
  m.mode = "linear";
  m.model.fpn.base = 4;
  m.model.fpn.scales = 2;
  m.model.fpn.blocks = 1;
  m.model.classes = 13;
  m.model.head = models::HeadKind::Linear;
  for (size_t k = 1; k < data::btcv_label_names().size(); ++k) m.labels.push_back(data::btcv_label_names()[k]);
  m.patch = {16, 16, 8};
  m.preprocess = data::PreprocessConfig::ct();
  m.preprocess.spacing = {8.0, 8.0, 16.0};
  m.preprocess.min_size = m.patch;
  return m;
}

TEST(Predict, LabelMapOverlaysItsInput) {
  const std::string dir = ::testing::TempDir() + "hdssl_predict_test";
  fs::remove_all(dir);
  data::PhantomConfig pc;
  pc.spacing = {6.0, 6.0, 12.0};
  pc.lps_file_axes = true;
  const std::string image = data::write_phantom_case(dir + "/in", 0, 11, pc, /*unlabeled=*/true);

  // A (briefly trained) model, saved and reloaded the way ./evaluate and ./predict do it.
  eval::SegmenterMeta meta = tiny_meta();
  Rng rng(1);
  models::Segmenter net(meta.model, rng);
  eval::TrainConfig tc;
  eval::Trainer trainer(net, tc, Device::cpu());
  const std::string ckpt = dir + "/checkpoint_final.safetensors";
  trainer.save(ckpt, 0, {{"hdssl.segmenter", eval::meta_to_json(meta).dump()}});
  eval::SegmenterMeta back;
  auto loaded = eval::load_segmenter(ckpt, Device::cpu(), &back);
  EXPECT_EQ(eval::meta_to_json(back), eval::meta_to_json(meta));

  eval::PredictResult r = eval::predict_file(image, dir + "/out", {loaded.get()}, back, 2, Device::cpu(), true);
  EXPECT_EQ(r.label_path, dir + "/out/phantom_000.nii.gz");
  ASSERT_TRUE(fs::exists(r.label_path));
  ASSERT_TRUE(fs::exists(r.png_path));
  data::NiftiImage in = data::read_nifti(image), out = data::read_nifti(r.label_path);
  EXPECT_EQ(out.volume.dims, in.volume.dims);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) EXPECT_NEAR(out.info.geom.affine[i][j], in.info.geom.affine[i][j], 1e-5) << i << "," << j;
  EXPECT_EQ(data::orientation_code(out.info.geom.affine), data::orientation_code(in.info.geom.affine));
  EXPECT_EQ(data::orientation_code(in.info.geom.affine), "LPS");
  EXPECT_EQ(out.info.datatype, data::kUInt8);
  for (float v : out.volume.data) ASSERT_TRUE(v >= 0 && v <= 13 && v == float(int(v))) << v;
  fs::remove_all(dir);
}

TEST(Predict, ProbabilitiesAverageOverModels) {
  eval::SegmenterMeta meta = tiny_meta();
  Rng r1(2), r2(3);
  models::Segmenter a(meta.model, r1), b(meta.model, r2);
  data::Volume v({20, 18, 9});
  Rng rng(4);
  for (float& x : v.data) x = rng.uniformf();
  std::vector<float> pa = eval::predict_probabilities({&a}, v, meta.patch, 2, Device::cpu()).to_vector<float>();
  std::vector<float> pb = eval::predict_probabilities({&b}, v, meta.patch, 2, Device::cpu()).to_vector<float>();
  std::vector<float> pab = eval::predict_probabilities({&a, &b}, v, meta.patch, 3, Device::cpu()).to_vector<float>();
  ASSERT_EQ(pab.size(), size_t(13 * v.numel()));
  for (size_t i = 0; i < pab.size(); ++i) ASSERT_NEAR(pab[i], 0.5f * (pa[i] + pb[i]), 1e-6) << i;
}

TEST(Predict, CaseNames) {
  EXPECT_EQ(eval::case_name_of("/a/b/case_0000.nii.gz"), "case");
  EXPECT_EQ(eval::case_name_of("x.nii"), "x");
  EXPECT_EQ(eval::case_name_of("d/img.hdr"), "img");
}
