// scripts/import_weights.py as a user runs it, on the committed PyTorch checkpoints of
// tests/reference/fixtures (Lightning .ckpt with prefix and heads, plain vox2vec-style .pt): the output must
// equal the committed import (which test_imported_weights.cpp checks against PyTorch's forward), the
// ignored entries are listed, and an unknown, missing or mis-shaped key, or hyper_parameters that contradict
// the shapes, stop the import naming the key and write nothing. Needs Debian's python3-numpy (the importer
// reads the checkpoint without torch); skipped with a message when it is absent.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "models/checkpoint.h"
#include "tests/apps/program_test_util.h"

namespace fs = std::filesystem;
using namespace hdssl::models;

namespace {
using Result = hdssl::test::ProgramResult;
using hdssl::test::run_command;
const std::string kFix = HDSSL_SOURCE_DIR "/tests/reference/fixtures/";
const std::string kImport = "/usr/bin/python3 " HDSSL_SOURCE_DIR "/scripts/import_weights.py ";

bool have_numpy() {
  if (std::system("/usr/bin/python3 -c 'import numpy' > /dev/null 2>&1") == 0) return true;
  std::printf("python3-numpy not installed: the importer cannot run (scripts/install-deps.sh installs it)\n");
  return false;
}

class ImportApp : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "hdssl_import_weights_" + std::to_string(::getpid());  // ctest -j: one per process
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
};

void expect_same_file(const std::string& got_path, const std::string& want_path) {
  SafeTensors got = read_safetensors(got_path), want = read_safetensors(want_path);
  ASSERT_EQ(got.tensors.size(), want.tensors.size());
  for (const StoredTensor& w : want.tensors) {
    const StoredTensor* g = got.find(w.name);
    ASSERT_NE(g, nullptr) << w.name;
    EXPECT_EQ(g->dtype, w.dtype) << w.name;
    EXPECT_EQ(g->shape, w.shape) << w.name;
    EXPECT_TRUE(g->bytes == w.bytes) << w.name;
  }
  EXPECT_EQ(got.metadata, want.metadata);
}
}  // namespace

TEST_F(ImportApp, LightningCheckpointImportsAsCommitted) {
  if (!have_numpy()) GTEST_SKIP() << "python3-numpy missing";
  const std::string out = dir_ + "/ours_tiny.safetensors";
  Result r = run_command(kImport + kFix + "ours_tiny.ckpt " + out + " --preset ours-ct");
  ASSERT_EQ(r.code, 0) << r.output;
  for (const char* s :
       {"optimizer_states", "hyper_parameters", "proj_head.0.weight", "rest_head.bias", "prefix \"backbone.\""})
    EXPECT_NE(r.output.find(s), std::string::npos) << s << "\n" << r.output;
  expect_same_file(out, kFix + "import_ours_tiny.safetensors");
  // Output exists: refused without --force and left as it was; with --force replaced.
  const auto before = fs::last_write_time(out);
  r = run_command(kImport + kFix + "ours_tiny.ckpt " + out + " --preset ours-ct");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("--force"), std::string::npos) << r.output;
  EXPECT_EQ(fs::last_write_time(out), before);
  r = run_command(kImport + kFix + "ours_tiny.ckpt " + out + " --preset ours-ct --force");
  EXPECT_EQ(r.code, 0) << r.output;
}

TEST_F(ImportApp, PlainStateDictImportsAsCommittedAndPreprocessingFlagsAreRecorded) {
  if (!have_numpy()) GTEST_SKIP() << "python3-numpy missing";
  const std::string out = dir_ + "/vox2vec_tiny.safetensors";
  Result r = run_command(kImport + kFix + "vox2vec_tiny.pt " + out + " --preset vox2vec");
  ASSERT_EQ(r.code, 0) << r.output;
  expect_same_file(out, kFix + "import_vox2vec_tiny.safetensors");
  const std::string mri = dir_ + "/as_mri.safetensors";
  r = run_command(kImport + kFix + "vox2vec_tiny.pt " + mri +
                  " --preset ours-mri --spacing 2 2 3 --percentiles 0.5 99.5");
  ASSERT_EQ(r.code, 0) << r.output;
  SafeTensors m = read_safetensors(mri);
  EXPECT_EQ(m.metadata.at("preprocessing"),
            "v1 mod=mri sp=2,2,3 ct=-1350,1000,-500 mri=0.5,99.5,0.3 min=128,128,32 body=0.3");
  EXPECT_EQ(m.metadata.at("expected_mri_percentiles"), "0.5,99.5");
  EXPECT_NE(m.metadata.at("preprocessing_source").find("spacing, percentiles"), std::string::npos);
  r = run_command(kImport + kFix + "vox2vec_tiny.pt " + dir_ + "/w.safetensors --preset ours-mri --window -175 250");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("--window is a CT setting"), std::string::npos) << r.output;
  r = run_command(kImport + kFix + "vox2vec_tiny.pt " + dir_ + "/w.safetensors --preset vox2vec --base 16");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("--base says 16, the tensor shapes say 1"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir_ + "/w.safetensors"));
}

TEST_F(ImportApp, DefectsAreRefusedByName) {
  if (!have_numpy()) GTEST_SKIP() << "python3-numpy missing";
  const std::pair<const char*, const char*> cases[] = {
      {"refuse_unknown_key.pt", "unknown key: bottom_block.layers.0.layers.7.weight"},
      {"refuse_missing_key.pt", "missing key: skip_blocks.0.bias"},
      {"refuse_wrong_shape.pt",
       "wrong shape: down_blocks.0.1.weight is [2, 1, 3, 3, 3], FPN3d(base 1, 2 scales) needs [2, 1, 1, 1, 1]"},
      {"refuse_hparams.ckpt", "hyper_parameters base_channels says 2, the tensor shapes say 1"},
      {"import_ours_tiny.safetensors", "not a PyTorch zip checkpoint"}};
  for (const auto& [file, msg] : cases) {
    const std::string out = dir_ + "/x.safetensors";
    Result r = run_command(kImport + kFix + file + " " + out + " --preset vox2vec");
    EXPECT_EQ(r.code, 1) << file << "\n" << r.output;
    EXPECT_NE(r.output.find(msg), std::string::npos) << file << "\n" << r.output;
    EXPECT_NE(r.output.find(file), std::string::npos) << r.output;  // the message names the file
    EXPECT_FALSE(fs::exists(out)) << file;
  }
}
