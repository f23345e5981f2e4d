// ./features end to end on a synthesized phantom with the imported tiny backbone of
// tests/reference/fixtures (hierarchical-dense-ssl layout, base 2, 3 scales, CT at 1 x 1 x 2 mm): the 4D
// NIfTI lies in the input's grid with the input's affine and has one channel per pyramid channel, the PNG
// is written, --per-level grids scale the affine by 2^i, safetensors output, the balanced projections of
// a pretraining checkpoint, and refusals. The NIfTI header is read with nifti_clib directly, as
// data/nifti_read refuses 4D images by design (it reads training volumes).
#include <gtest/gtest.h>
#include <nifti/nifti2_io.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "autograd/variable.h"
#include "data/nifti.h"
#include "data/preprocess_compat.h"
#include "models/checkpoint.h"
#include "models/fpn3d.h"
#include "models/segmentation.h"
#include "tests/apps/program_test_util.h"

namespace fs = std::filesystem;

namespace {
using Result = hdssl::test::ProgramResult;
using hdssl::test::run_passive;
const std::string kBin = HDSSL_BINARY_DIR;
const std::string kWeights = HDSSL_SOURCE_DIR "/tests/reference/fixtures/import_ours_tiny.safetensors";

struct Header {
  int64_t dims[8];
  hdssl::data::Mat44 sform, qform;
  int sform_code, qform_code;
};
Header header(const std::string& path) {
  nifti_image* nim = nifti_image_read(path.c_str(), 0);
  if (!nim) throw std::runtime_error(path + ": nifti_clib cannot read it");
  Header h{};
  for (int i = 0; i < 8; ++i) h.dims[i] = nim->dim[i];
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c)
      h.sform[size_t(r)][size_t(c)] = nim->sto_xyz.m[r][c], h.qform[size_t(r)][size_t(c)] = nim->qto_xyz.m[r][c];
  h.sform_code = nim->sform_code, h.qform_code = nim->qform_code;
  nifti_image_free(nim);
  return h;
}
void expect_affine(const hdssl::data::Mat44& got, const hdssl::data::Mat44& want, const std::string& what) {
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c)
      EXPECT_NEAR(got[size_t(r)][size_t(c)], want[size_t(r)][size_t(c)], 1e-5) << what << " [" << r << "][" << c << "]";
}
bool is_png(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char m[8] = {};
  f.read(m, 8);
  return f.good() && std::string(m + 1, 3) == "PNG";
}

class FeaturesApp : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // One folder per process: ctest -j runs the cases of this suite as parallel processes.
    dir_ = ::testing::TempDir() + "hdssl_features_app_" + std::to_string(::getpid());
    fs::remove_all(dir_);
    Result r =
        run_passive(kBin + "/synth -o " + dir_ + "/ph --cases 1 --seed 3 --unlabeled --spacing 2 2 4 --fov 96 80 64");
    ASSERT_EQ(r.code, 0) << r.output;
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static std::string features(const std::string& out, const std::string& extra) {
    const std::string patch = extra.find("--patch") == std::string::npos ? " --patch 32 32 16" : "";
    return kBin + "/features -i " + dir_ + "/ph -o " + dir_ + "/" + out + patch + " --threads 1 " + extra;
  }
  static std::string dir_;
};
std::string FeaturesApp::dir_;
}  // namespace

TEST_F(FeaturesApp, NiftiInTheInputsGridWithEveryChannelAndAPng) {
  Result r = run_passive(features("f", "-w " + kWeights));
  ASSERT_EQ(r.code, 0) << r.output;
  const std::string in = dir_ + "/ph/phantom_000.nii.gz", out = dir_ + "/f/phantom_000_features.nii.gz";
  hdssl::data::NiftiInfo info = hdssl::data::read_nifti_header(in);
  Header h = header(out);
  EXPECT_EQ(h.dims[0], 4);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(h.dims[i + 1], info.geom.dims[size_t(i)]);
  EXPECT_EQ(h.dims[4], 2 + 4 + 8);  // levels 0, 1, 2 of base 2
  EXPECT_EQ(h.sform_code, info.geom.sform_code);
  EXPECT_EQ(h.qform_code, info.geom.qform_code);
  expect_affine(h.sform, info.geom.affine, "sform");
  expect_affine(h.qform, info.geom.affine, "qform");
  EXPECT_TRUE(is_png(dir_ + "/f/phantom_000_pca.png"));
}

TEST_F(FeaturesApp, PerLevelGridsAndSafetensors) {
  Result r = run_passive(features("lv", "-w " + kWeights + " --per-level --levels 0,2 --no-png"));
  ASSERT_EQ(r.code, 0) << r.output;
  Header l0 = header(dir_ + "/lv/phantom_000_level0.nii.gz"), l2 = header(dir_ + "/lv/phantom_000_level2.nii.gz");
  EXPECT_EQ(l0.dims[4], 2);
  EXPECT_EQ(l2.dims[4], 8);
  for (int i = 1; i <= 3; ++i) EXPECT_EQ(l2.dims[i], (l0.dims[i] + 3) / 4);
  for (int rr = 0; rr < 3; ++rr) {
    for (int c = 0; c < 3; ++c) EXPECT_NEAR(l2.sform[size_t(rr)][size_t(c)], 4 * l0.sform[size_t(rr)][size_t(c)], 1e-6);
    EXPECT_NEAR(l2.sform[size_t(rr)][3], l0.sform[size_t(rr)][3], 1e-6);  // same origin: level voxel j = voxel 4j
  }
  EXPECT_FALSE(fs::exists(dir_ + "/lv/phantom_000_pca.png"));

  r = run_passive(features("st", "-w " + kWeights + " --format safetensors --grid preprocessed --levels 1"));
  ASSERT_EQ(r.code, 0) << r.output;
  hdssl::models::SafeTensors st = hdssl::models::read_safetensors(dir_ + "/st/phantom_000_features.safetensors");
  const hdssl::models::StoredTensor* f = st.find("features");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(f->shape.size(), 4u);
  EXPECT_EQ(f->shape[0], 4);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(f->shape[size_t(i) + 1], l0.dims[i + 1]);  // the preprocessed grid
  EXPECT_EQ(st.metadata.at("levels"), "[1]");
  EXPECT_TRUE(st.metadata.count("affine.features"));
}

TEST_F(FeaturesApp, BalancedProjectionsOfAPretrainingCheckpoint) {
  const std::string run = dir_ + "/pt";
  Result r = run_passive(kBin + "/pretrain --data " + dir_ + "/ph -o " + run +
                " --patch 16 16 8 --batch-pairs 2 --voxels-per-pair 16 "
                "--base-channels 4 --scales 2 --spacing 4 4 8 --modality ct --threads 1 --loader-threads 1 --steps 1 "
                "--device cpu");
  ASSERT_EQ(r.code, 0) << r.output;
  r = run_passive(features("bal", "-w " + run + "/checkpoint_final.safetensors --patch 16 16 8 --no-png"));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("balanced projections"), std::string::npos) << r.output;
  EXPECT_EQ(header(dir_ + "/bal/phantom_000_features.nii.gz").dims[4], 2 * 32);
  r = run_passive(features("raw", "-w " + run + "/checkpoint_final.safetensors --patch 16 16 8 --no-png --raw"));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(header(dir_ + "/raw/phantom_000_features.nii.gz").dims[4], 4 + 8);
}

TEST_F(FeaturesApp, Refusals) {
  Result r = run_passive(features("bad", "-w " + kWeights + " --levels 0,3"));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("--levels 0,3: \"3\" is not a level of this 3-scale backbone"), std::string::npos)
      << r.output;
  r = run_passive(features("bad", "-w " + kWeights + " --modality mri"));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("modality: the weights expect ct"), std::string::npos) << r.output;
  r = run_passive(features("bad", "-w " + dir_ + "/missing.safetensors"));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("missing.safetensors"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir_ + "/bad/phantom_000_features.nii.gz"));
}

// A preprocessed volume within one window: the written features are the network's own pyramid, level i
// repeated over 2^i x 2^i x 2^i voxels (--grid preprocessed), and --per-level gives the level outputs exactly.
TEST_F(FeaturesApp, OneWindowEqualsTheNetworksPyramid) {
  using namespace hdssl;
  Result r = run_passive(
      features("one", "-w " + kWeights + " --patch 128 128 64 --grid preprocessed --format safetensors --no-png"));
  ASSERT_EQ(r.code, 0) << r.output;
  r = run_passive(
      features("one_lv", "-w " + kWeights + " --patch 128 128 64 --per-level --format safetensors --no-png"));
  ASSERT_EQ(r.code, 0) << r.output;
  models::SafeTensors w = models::read_safetensors(kWeights);
  data::PreprocessConfig pc = *data::expected_preprocessing(w.metadata, kWeights);
  pc.min_size = {128, 128, 64};
  data::PreprocessedVolume pv = data::preprocess(data::read_nifti(dir_ + "/ph/phantom_000.nii.gz"), pc);
  ASSERT_EQ(pv.image.dims, (data::Dims3{128, 128, 64}));  // grown to the window: one forward
  Rng rng(0);
  models::FPN3d fpn(models::fpn_config_of(w, ""), rng);
  models::load_module_state(fpn, w, "", true);
  fpn.train(false);
  NoGradGuard no_grad;
  std::vector<Variable> pyr = fpn.forward(Variable(Tensor::from_vector(pv.image.data, {1, 1, 128, 128, 64})));
  models::SafeTensors one = models::read_safetensors(dir_ + "/one/phantom_000_features.safetensors");
  models::SafeTensors lv = models::read_safetensors(dir_ + "/one_lv/phantom_000_features.safetensors");
  const std::vector<float> all = models::to_tensor(*one.find("features"), DType::F32, Device::cpu()).to_vector<float>();
  const int64_t X = 128, Y = 128, Z = 64, n = X * Y * Z;
  int64_t k0 = 0;
  for (int i = 0; i < 3; ++i) {
    const std::vector<float> level = pyr[size_t(i)].value().to_vector<float>();
    const int64_t C = pyr[size_t(i)].size(1), x1 = pyr[size_t(i)].size(2), y1 = pyr[size_t(i)].size(3),
                  z1 = pyr[size_t(i)].size(4);
    const models::StoredTensor* per = lv.find("level_" + std::to_string(i));
    ASSERT_NE(per, nullptr);
    EXPECT_EQ(per->shape, (Shape{C, x1, y1, z1}));
    EXPECT_EQ(models::to_tensor(*per, DType::F32, Device::cpu()).to_vector<float>(), level) << "level " << i;
    double worst = 0;
    const int s = 1 << i;
    for (int64_t c = 0; c < C; ++c)
      for (int64_t x = 0; x < X; ++x)
        for (int64_t y = 0; y < Y; ++y)
          for (int64_t z = 0; z < Z; ++z)
            worst = std::max(worst, double(std::abs(all[size_t((k0 + c) * n + (x * Y + y) * Z + z)] -
                                                    level[size_t(((c * x1 + x / s) * y1 + y / s) * z1 + z / s)])));
    EXPECT_EQ(worst, 0.0) << "level " << i;
    k0 += C;
  }
  EXPECT_EQ(k0, one.find("features")->shape[0]);
}
