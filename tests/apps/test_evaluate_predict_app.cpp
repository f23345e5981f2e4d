// ./evaluate and ./predict end to end on three tiny phantoms: the run folder's files, refusals, --resume
// of a finished run, --table, and predictions in each input's grid.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

#include "data/nifti.h"
#include "eval/report.h"
#include "tests/apps/program_test_util.h"

namespace fs = std::filesystem;

namespace {
using Result = hdssl::test::ProgramResult;
using hdssl::test::run_passive;

const std::string kBin = HDSSL_BINARY_DIR;

class Apps : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // One folder per process: ctest -j runs these tests in parallel processes (and other checkouts may too).
    dir_ = ::testing::TempDir() + "hdssl_eval_apps_" + std::to_string(::getpid());
    fs::remove_all(dir_);
    Result r = run_passive(kBin + "/synth -o " + dir_ + "/data --cases 3 --seed 5 --spacing 8 8 16");
    ASSERT_EQ(r.code, 0) << r.output;
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static std::string eval_cmd(const std::string& run, const std::string& extra) {
    return kBin + "/evaluate --mode linear --data " + dir_ + "/data -o " + dir_ + "/" + run +
           " --steps 2 --batch 1 --patch 16 16 8 --spacing 8 8 16 --base-channels 4 --scales 2 --blocks 1 --folds 3"
           " --threads 1 --save-every 1 " + extra;
  }
  static std::string dir_;
};
std::string Apps::dir_;

TEST_F(Apps, EvaluateWritesTheRunFolderAndPredictOverlaysInputs) {
  Result r = run_passive(eval_cmd("run", ""));
  ASSERT_EQ(r.code, 0) << r.output;
  const std::string run = dir_ + "/run";
  for (const char* f : {"config.json", "log.txt", "splits_final.json", "cv_table.md", "cv_table.csv"})
    EXPECT_TRUE(fs::exists(run + "/" + f)) << f;
  for (int i = 0; i < 3; ++i) {
    const std::string fd = run + "/fold_" + std::to_string(i);
    for (const char* f : {"metrics.csv", "progress.png", "checkpoint_final.safetensors", "summary.json"})
      EXPECT_TRUE(fs::exists(fd + "/" + f)) << fd << "/" << f;
    EXPECT_FALSE(fs::exists(fd + "/checkpoint_latest.safetensors"));
    hdssl::eval::FoldSummary s = hdssl::eval::read_summary(fd + "/summary.json");
    EXPECT_EQ(s.fold, i);
    EXPECT_EQ(s.labels.size(), 13u);
    EXPECT_EQ(s.labels[0], "spleen");
    ASSERT_EQ(s.cases.size(), 1u);
    for (double d : s.cases[0].dice) EXPECT_TRUE(d >= 0 && d <= 1) << d;
    std::ifstream m(fd + "/metrics.csv");
    std::string line;
    int lines = 0;
    while (std::getline(m, line)) ++lines;
    EXPECT_EQ(lines, 3);  // header + 2 steps
  }

  // A second run into the same folder is refused without --resume. With --resume the run keeps its own
  // settings (the resume rule of ./pretrain): a different flag that defines the run is ignored, with a note.
  r = run_passive(eval_cmd("run", ""));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("--resume"), std::string::npos) << r.output;
  r = run_passive(eval_cmd("run", "--resume --lr 0.1"));
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("--lr 0.1 ignored: a resumed run keeps its lr = 0.0003"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("already done"), std::string::npos) << r.output;
  // The run folder alone: its settings from config.json.
  r = run_passive(kBin + "/evaluate --resume " + run + " --threads 1");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("already done"), std::string::npos) << r.output;

  // --table over the run.
  r = run_passive(kBin + "/evaluate --table " + run + " -o " + dir_ + "/table");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(fs::exists(dir_ + "/table.md"));
  EXPECT_NE(r.output.find("| linear |"), std::string::npos) << r.output;

  // ./predict with every fold: one label map per input, in that input's grid.
  r = run_passive(kBin + "/predict -i " + dir_ + "/data/imagesTr -o " + dir_ + "/pred -m " + run + " --threads 1");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("3 checkpoint(s)"), std::string::npos) << r.output;
  // The model each fold tested: the validation-selected checkpoint_best, not the last step's.
  EXPECT_NE(r.output.find("fold_0/checkpoint_best.safetensors"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("checkpoint_final.safetensors"), std::string::npos) << r.output;
  for (int i = 0; i < 3; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "phantom_%03d", i);
    auto in = hdssl::data::read_nifti_header(dir_ + "/data/imagesTr/" + name + "_0000.nii.gz");
    auto out = hdssl::data::read_nifti_header(dir_ + "/pred/" + name + ".nii.gz");
    EXPECT_EQ(out.geom.dims, in.geom.dims);
    for (int a = 0; a < 4; ++a)
      for (int b = 0; b < 4; ++b) EXPECT_NEAR(out.geom.affine[a][b], in.geom.affine[a][b], 1e-5);
    EXPECT_TRUE(fs::exists(dir_ + "/pred/" + name + ".png"));
  }
}

TEST_F(Apps, Refusals) {
  Result r = run_passive(kBin + "/evaluate --mode linaer --data " + dir_ + "/data -o " + dir_ + "/bad");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("unknown mode"), std::string::npos) << r.output;
  r = run_passive(kBin + "/evaluate --mode scratch --weights x.safetensors --data " + dir_ + "/data -o " + dir_ +
                  "/bad2");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("drop --weights"), std::string::npos) << r.output;
  r = run_passive(eval_cmd("bad3", "--fold 5"));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("there are 3 folds"), std::string::npos) << r.output;
  r = run_passive(kBin + "/predict -i " + dir_ + "/data/imagesTr -o " + dir_ + "/p2 -m " + dir_ + "/nothing");
  EXPECT_NE(r.code, 0);
  // Ranges at the command line: exit 2, the flag and its range named.
  for (const auto& [flags, says] : std::vector<std::pair<std::string, std::string>>{
           {"--lr 0", "--lr 0: out of range, must be > 0"},
           {"--steps 0", "--steps 0: out of range, must be >= 1"},
           {"--fg-prob 1.5", "--fg-prob 1.5: out of range, must be >= 0 and <= 1"},
           {"--patch 16 0 8", "--patch 16 0 8: out of range, each value must be >= 1"},
           {"--spacing 8 -8 16", "--spacing 8 -8 16: out of range, each value must be > 0"},
           {"--folds 1", "--folds 1: out of range, must be >= 2"},
           {"--ct-window 250,-175", "--ct-window: CT window '250,-175': expected paper, program or LO,HI"}}) {
    r = run_passive(eval_cmd("bad4", flags));
    EXPECT_EQ(r.code, 2) << flags << "\n" << r.output;
    EXPECT_NE(r.output.find(says), std::string::npos) << r.output;
  }
  EXPECT_FALSE(fs::exists(dir_ + "/bad4")) << "refused at the command line, before the run folder";
  r = run_passive(kBin + "/predict -i x -o y -m z --window-batch 0");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("--window-batch 0: out of range, must be >= 1"), std::string::npos) << r.output;
  r = run_passive(kBin + "/predict -i x -o y");  // -m missing: a usage error, exit 2 like every program
  EXPECT_EQ(r.code, 2) << r.output;
}

TEST_F(Apps, FineTuneAliasWithSplitsFileOneFoldAndFewCases) {
  const std::string splits = dir_ + "/my_splits.json";
  std::ofstream(splits) << R"([{"train": ["phantom_000", "phantom_001"], "val": ["phantom_002"]},
                              {"train": ["phantom_001", "phantom_002"], "val": ["phantom_000"]}])";
  Result r =
      run_passive(kBin + "/evaluate --mode fine_tuning --data " + dir_ + "/data -o " + dir_ + "/ft --splits " + splits +
                  " --fold 1 --train-cases 1 --steps 3 --freeze-steps 1 --warmup-steps 2 --batch 1 --patch 16 16 8"
                  " --spacing 8 8 16 --base-channels 4 --scales 2 --blocks 1 --threads 1");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_FALSE(fs::exists(dir_ + "/ft/fold_0"));
  ASSERT_TRUE(fs::exists(dir_ + "/ft/fold_1/summary.json"));
  EXPECT_EQ(hdssl::eval::read_summary(dir_ + "/ft/fold_1/summary.json").cases.at(0).id, "phantom_000");
  EXPECT_NE(r.output.find("fold 1: 1 training cases"), std::string::npos) << r.output;
  // backbone_lr: 0 while frozen (step 1), then 3e-5 * 10^(u/2) for u = 0, 1
  std::ifstream m(dir_ + "/ft/fold_1/metrics.csv");
  std::string line;
  std::vector<double> lr;
  std::getline(m, line);
  while (std::getline(m, line)) lr.push_back(std::stod(line.substr(line.rfind(',') + 1)));
  ASSERT_EQ(lr.size(), 3u);
  EXPECT_EQ(lr[0], 0.0);
  EXPECT_NEAR(lr[1], 3e-5, 1e-12);
  EXPECT_NEAR(lr[2], 3e-5 * std::sqrt(10.0), 1e-10);
  std::ifstream sp(dir_ + "/ft/splits_final.json");
  std::stringstream ss;
  ss << sp.rdbuf();
  EXPECT_NE(ss.str().find("phantom_002"), std::string::npos);
}

// --precision bf16: a scratch fold trains (backbone and head, bf16 convolutions) and is evaluated by
// the sliding window under the same precision; the run records its precision and its Dice is a number.
TEST_F(Apps, Bf16ScratchFoldRunsAndRecordsItsPrecision) {
  Result r = run_passive(kBin + "/evaluate --mode scratch --data " + dir_ + "/data -o " + dir_ +
                         "/bf16 --folds 3 --fold 0 --steps 2 --batch 1 --patch 16 16 8 --spacing 8 8 16"
                         " --base-channels 4 --scales 2 --blocks 1 --threads 1 --precision bf16");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("precision: bf16"), std::string::npos) << r.output;
  std::ifstream c(dir_ + "/bf16/config.json");
  EXPECT_NE(std::string(std::istreambuf_iterator<char>(c), {}).find("\"precision\": \"bf16\""), std::string::npos);
  const hdssl::eval::FoldSummary s = hdssl::eval::read_summary(dir_ + "/bf16/fold_0/summary.json");
  ASSERT_FALSE(s.cases.empty());
  for (const auto& cs : s.cases)
    for (double d : cs.dice) EXPECT_TRUE(d >= 0 && d <= 1) << cs.id << ": Dice " << d;
}

}  // namespace
