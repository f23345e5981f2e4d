// ./pretrain --probe-data (the online probe, eval/online_probe.h) and the preprocessing check of imported
// weights in ./pretrain --init and ./evaluate --weights, as a user runs them:
//   - a run with the probe has bit for bit the losses of a run without it (the probe reads a copy of the
//     backbone and draws from random streams of its own), probe_dice is a Dice in [0, 1] at every
//     --probe-every step and nan elsewhere, and --resume reproduces the uninterrupted run, probes included;
//   - a probe dataset that is missing or too small is refused (exit 3), a bad --probe-every (exit 2);
//   - the committed import of scripts/import_weights.py --preset ours-ct (1 x 1 x 2 mm, [-175, 250] HU) is
//     accepted by --init and --weights with --ct-window program and that spacing, and its weights are the
//     run's starting backbone; with another window or spacing both programs refuse with exit 2 and name
//     what differs; --allow-preprocess-mismatch uses them anyway, with a warning in the log.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/apps/program_test_util.h"
#include "apps/common/run_folder.h"
#include "models/checkpoint.h"

namespace fs = std::filesystem;
using namespace hdssl;

namespace {
using Result = hdssl::test::ProgramResult;
using hdssl::test::run_passive;
const std::string kBin = HDSSL_BINARY_DIR;
const std::string kImported = HDSSL_SOURCE_DIR "/tests/reference/fixtures/import_ours_tiny.safetensors";

std::string slurp(const std::string& path) { return hdssl::test::read_text(path); }

// A tiny CPU configuration (bitwise comparisons are a CPU promise).
const std::string kTiny =
    " --patch 16 16 8 --batch-pairs 2 --voxels-per-pair 64 --base-channels 4 --scales 2 --spacing 6 6 12"
    " --modality ct --threads 1 --loader-threads 1 --lr 1e-3 --device cpu --log-every 1";

class ProbeInitApp : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = ::testing::TempDir() + "hdssl_probe_init_" + std::to_string(::getpid());  // ctest -j: one per process
    fs::remove_all(dir_);
    const std::string synth = kBin + "/synth -o " + dir_;
    ASSERT_EQ(run_passive(synth + "/unlabeled --cases 2 --seed 7 --unlabeled --spacing 4 4 8").code, 0);
    ASSERT_EQ(run_passive(synth + "/labeled --cases 3 --seed 5 --spacing 4 4 8").code, 0);
    // Small phantoms for the imported weights' 1 x 1 x 2 mm grid.
    ASSERT_EQ(run_passive(synth + "/small --cases 3 --seed 3 --spacing 2 2 4 --fov 40 40 48").code, 0);
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static std::string pretrain(const std::string& out, const std::string& extra) {
    return kBin + "/pretrain --data " + dir_ + "/unlabeled -o " + dir_ + "/" + out + kTiny + " " + extra;
  }
  static std::string dir_;
};
std::string ProbeInitApp::dir_;

std::vector<std::vector<std::string>> cells(const std::string& run) { return hdssl::test::metrics_cells(run); }
std::vector<std::string> losses(const std::string& run) { return hdssl::test::metrics_losses(run); }
std::vector<std::string> probe_column(const std::string& run) {
  std::vector<std::string> out;
  for (const auto& r : cells(run)) out.push_back(r.at(8));
  return out;
}
}  // namespace

TEST_F(ProbeInitApp, TheOnlineProbeLeavesThePretrainingUnchangedAndResumes) {
  const std::string probe = " --probe-data " + dir_ + "/labeled --probe-every 5 --probe-steps 10";
  Result a = run_passive(pretrain("plain", "--steps 12 --save-every 6"));
  ASSERT_EQ(a.code, 0) << a.output;
  Result b = run_passive(pretrain("probed", "--steps 12 --save-every 6" + probe));
  ASSERT_EQ(b.code, 0) << b.output;
  EXPECT_EQ(losses(dir_ + "/plain"), losses(dir_ + "/probed"));
  ASSERT_EQ(losses(dir_ + "/plain").size(), 12u);

  std::vector<std::string> cols;
  std::vector<std::vector<double>> rows;
  app::MetricsCsv::read(dir_ + "/probed/metrics.csv", cols, rows);  // the repo's reader takes the nan cells
  ASSERT_EQ(rows.size(), 12u);
  ASSERT_EQ(cols.back(), "probe_dice");
  for (const auto& r : rows) {
    const bool probed = int64_t(r[0]) % 5 == 0;
    EXPECT_EQ(std::isfinite(r.back()), probed) << "step " << r[0];
    if (probed) EXPECT_TRUE(r.back() >= 0 && r.back() <= 1) << r.back();
  }
  for (const char* step : {"step 5: probe Dice", "step 10: probe Dice"})
    EXPECT_NE(slurp(dir_ + "/probed/log.txt").find(step), std::string::npos) << step;
  EXPECT_TRUE(fs::exists(dir_ + "/probed/progress.png"));
  // The backbones end bit for bit the same.
  EXPECT_EQ(slurp(dir_ + "/plain/backbone.safetensors"), slurp(dir_ + "/probed/backbone.safetensors"));

  // Stopped after step 6, resumed to 12 (the probe settings come back from the checkpoint): the same rows.
  Result c = run_passive(pretrain("resumed", "--steps 6 --save-every 6" + probe));
  ASSERT_EQ(c.code, 0) << c.output;
  Result d = run_passive(kBin + "/pretrain --resume " + dir_ + "/resumed --steps 12 --threads 1 --loader-threads 1");
  ASSERT_EQ(d.code, 0) << d.output;
  EXPECT_EQ(losses(dir_ + "/resumed"), losses(dir_ + "/probed"));
  EXPECT_EQ(probe_column(dir_ + "/resumed"), probe_column(dir_ + "/probed"));
}

TEST_F(ProbeInitApp, ProbeRefusals) {
  Result r = run_passive(pretrain("p1", "--steps 2 --probe-data " + dir_ + "/nowhere"));
  EXPECT_EQ(r.code, 3) << r.output;
  EXPECT_NE(r.output.find("--probe-data"), std::string::npos) << r.output;
  r = run_passive(pretrain("p2", "--steps 2 --probe-data " + dir_ + "/labeled --probe-cases 3"));  // 3 + 1 > 3 cases
  EXPECT_EQ(r.code, 3) << r.output;
  EXPECT_NE(r.output.find("needs 3 training + 1 validation cases"), std::string::npos) << r.output;
  r = run_passive(pretrain("p3", "--steps 2 --probe-data " + dir_ + "/labeled --probe-every 0"));
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_FALSE(fs::exists(dir_ + "/p3"));
}

// The imported ours-ct fixture: base 2, 3 scales, 1 x 1 x 2 mm, [-175, 250] HU.
TEST_F(ProbeInitApp, PretrainInitAcceptsRefusesAndOverrides) {
  const std::string base = kBin + "/pretrain --data " + dir_ +
                           "/small --patch 16 16 8 --batch-pairs 2 --voxels-per-pair 32"
                           " --modality ct --threads 1 --loader-threads 1 --device cpu --steps 1 --lr 1e-9 --init " +
                           kImported;
  Result r = run_passive(base + " -o " + dir_ + "/init_ok --spacing 1 1 2 --ct-window program");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("backbone initialised from"), std::string::npos) << r.output;
  // One step at lr 1e-9 moves no weight by more than ~1e-8: the run started from the imported weights.
  models::SafeTensors want = models::read_safetensors(kImported);
  models::SafeTensors got = models::read_safetensors(dir_ + "/init_ok/backbone.safetensors");
  const models::StoredTensor* w = want.find("first_conv.weight");
  const models::StoredTensor* g = got.find("first_conv.weight");
  ASSERT_TRUE(w && g);
  const Tensor wt = models::to_tensor(*w, DType::F64, Device::cpu()),
               gt = models::to_tensor(*g, DType::F64, Device::cpu());
  ASSERT_EQ(wt.numel(), gt.numel());
  for (int64_t i = 0; i < wt.numel(); ++i) EXPECT_NEAR(wt.data<double>()[i], gt.data<double>()[i], 1e-6) << i;

  r = run_passive(base + " -o " + dir_ + "/init_window --spacing 1 1 2 --ct-window paper");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("CT window: the weights expect [-175, 250] HU, this run uses [-1350, 1000] HU"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("--allow-preprocess-mismatch"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir_ + "/init_window/checkpoint_latest.safetensors"));
  r = run_passive(base + " -o " + dir_ + "/init_spacing --spacing 2 2 4 --ct-window program");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("spacing: the weights expect 1 x 1 x 2 mm, this run uses 2 x 2 x 4 mm"), std::string::npos)
      << r.output;

  r = run_passive(base + " -o " + dir_ + "/init_allowed --spacing 1 1 2 --ct-window paper --allow-preprocess-mismatch");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(slurp(dir_ + "/init_allowed/log.txt").find("warning (--allow-preprocess-mismatch): CT window"),
            std::string::npos);

  r = run_passive(base + " -o " + dir_ + "/init_arch --spacing 1 1 2 --ct-window program --base-channels 8");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("the backbone has --base-channels 2"), std::string::npos) << r.output;
}

TEST_F(ProbeInitApp, EvaluateWeightsAcceptsRefusesAndOverrides) {
  const std::string base = kBin + "/evaluate --mode linear --data " + dir_ +
                           "/small --steps 1 --batch 1 --patch 16 16 8"
                           " --folds 3 --fold 0 --threads 1 --weights " +
                           kImported;
  Result r = run_passive(base + " -o " + dir_ + "/ev_ok --spacing 1 1 2 --ct-window program");
  ASSERT_EQ(r.code, 0) << r.output;
  r = run_passive(base + " -o " + dir_ + "/ev_window --spacing 1 1 2 --ct-window paper");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("CT window: the weights expect [-175, 250] HU"), std::string::npos) << r.output;
  r = run_passive(base + " -o " + dir_ + "/ev_spacing --spacing 2 2 4 --ct-window program");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("spacing: the weights expect 1 x 1 x 2 mm"), std::string::npos) << r.output;
  r = run_passive(base + " -o " + dir_ + "/ev_allowed --spacing 2 2 4 --ct-window program --allow-preprocess-mismatch");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(slurp(dir_ + "/ev_allowed/log.txt").find("warning (--allow-preprocess-mismatch): spacing"),
            std::string::npos);
  EXPECT_NE(slurp(dir_ + "/ev_allowed/config.json").find("\"allow_preprocess_mismatch\": true"), std::string::npos);
}
