// The synth program end to end: -h, bad flags, an nnU-Net v2 folder that our reader accepts, byte-identical
// output for the same seed, and an unlabeled folder for pretraining.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "data/dataset.h"
#include "tests/apps/program_test_util.h"
#include "tests/data/test_util.h"

using namespace hdssl::data;
namespace fs = std::filesystem;

namespace {
const std::string kSynth = std::string(HDSSL_BINARY_DIR) + "/synth";

int run(const std::string& args) { return hdssl::test::run_command(kSynth + " " + args).code; }

std::string bytes(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}
}  // namespace

TEST(SynthCli, HelpAndBadFlags) {
  ASSERT_TRUE(fs::exists(kSynth)) << "build the synth target first";
  EXPECT_EQ(run("-h"), 0);
  EXPECT_NE(run(""), 0) << "-o is required";
  EXPECT_NE(run("-o /tmp/x --modality pet"), 0);
  EXPECT_NE(run("-o /tmp/x --spacing 1 1"), 0);
  EXPECT_NE(run("-o /tmp/x --spacing 1 -1 2"), 0);
}

TEST(SynthCli, WritesAReadableDeterministicNnunetFolder) {
  std::string a = test::temp_dir("synth_a"), b = test::temp_dir("synth_b");
  const std::string common = " --cases 2 --seed 4 --spacing 4 4 6 --fov 300 240 180";
  ASSERT_EQ(run("-o " + a + common + " --png " + a + "/slice.png"), 0);
  ASSERT_EQ(run("-o " + b + common), 0);
  LabeledDataset ds = read_labeled_dataset(a);
  ASSERT_EQ(ds.cases.size(), 2u);
  EXPECT_EQ(ds.label_names.size(), 14u);
  EXPECT_TRUE(fs::file_size(a + "/slice.png") > 1000);
  for (const auto& c : ds.cases) {
    std::string rel_img = fs::relative(c.image, a).string(), rel_lab = fs::relative(c.label, a).string();
    EXPECT_EQ(bytes(c.image), bytes(b + "/" + rel_img)) << "same seed must give the same file";
    EXPECT_EQ(bytes(c.label), bytes(b + "/" + rel_lab));
  }
  PreprocessConfig pc = PreprocessConfig::ct();
  pc.spacing = {4.0, 4.0, 6.0};
  pc.min_size = {16, 16, 8};
  PreprocessedCase pcase = load_labeled_case(ds, 0, pc);
  EXPECT_EQ(pcase.labels.dims, pcase.image.image.dims);
  // MRI, unlabeled: images only, directly in the folder.
  std::string u = test::temp_dir("synth_u");
  ASSERT_EQ(run("-o " + u + " --cases 1 --modality mri --unlabeled --spacing 4 4 6"), 0);
  EXPECT_EQ(find_nifti_files(u), std::vector<std::string>{u + "/phantom_000.nii.gz"});
  EXPECT_FALSE(fs::exists(u + "/dataset.json"));
}
