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
const std::string kBin = HDSSL_BINARY_DIR;
const std::string kImported = HDSSL_SOURCE_DIR "/tests/reference/fixtures/import_ours_tiny.safetensors";

struct Result {
  int rc;
  std::string out;
};
Result sh(const std::string& cmd) {
  FILE* p = ::popen(("OMP_WAIT_POLICY=PASSIVE " + cmd + " 2>&1").c_str(), "r");
  std::string out;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  int st = ::pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

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
    ASSERT_EQ(sh(kBin + "/synth -o " + dir_ + "/unlabeled --cases 2 --seed 7 --unlabeled --spacing 4 4 8").rc, 0);
    ASSERT_EQ(sh(kBin + "/synth -o " + dir_ + "/labeled --cases 3 --seed 5 --spacing 4 4 8").rc, 0);
    // Small phantoms for the imported weights' 1 x 1 x 2 mm grid.
    ASSERT_EQ(sh(kBin + "/synth -o " + dir_ + "/small --cases 3 --seed 3 --spacing 2 2 4 --fov 40 40 48").rc, 0);
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
  Result a = sh(pretrain("plain", "--steps 12 --save-every 6"));
  ASSERT_EQ(a.rc, 0) << a.out;
  Result b = sh(pretrain("probed", "--steps 12 --save-every 6" + probe));
  ASSERT_EQ(b.rc, 0) << b.out;
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
  Result c = sh(pretrain("resumed", "--steps 6 --save-every 6" + probe));
  ASSERT_EQ(c.rc, 0) << c.out;
  Result d = sh(kBin + "/pretrain --resume " + dir_ + "/resumed --steps 12 --threads 1 --loader-threads 1");
  ASSERT_EQ(d.rc, 0) << d.out;
  EXPECT_EQ(losses(dir_ + "/resumed"), losses(dir_ + "/probed"));
  EXPECT_EQ(probe_column(dir_ + "/resumed"), probe_column(dir_ + "/probed"));
}

TEST_F(ProbeInitApp, ProbeRefusals) {
  Result r = sh(pretrain("p1", "--steps 2 --probe-data " + dir_ + "/nowhere"));
  EXPECT_EQ(r.rc, 3) << r.out;
  EXPECT_NE(r.out.find("--probe-data"), std::string::npos) << r.out;
  r = sh(pretrain("p2", "--steps 2 --probe-data " + dir_ + "/labeled --probe-cases 3"));  // 3 + 1 > 3 cases
  EXPECT_EQ(r.rc, 3) << r.out;
  EXPECT_NE(r.out.find("needs 3 training + 1 validation cases"), std::string::npos) << r.out;
  r = sh(pretrain("p3", "--steps 2 --probe-data " + dir_ + "/labeled --probe-every 0"));
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_FALSE(fs::exists(dir_ + "/p3"));
}

// The imported ours-ct fixture: base 2, 3 scales, 1 x 1 x 2 mm, [-175, 250] HU.
TEST_F(ProbeInitApp, PretrainInitAcceptsRefusesAndOverrides) {
  const std::string base = kBin + "/pretrain --data " + dir_ +
                           "/small --patch 16 16 8 --batch-pairs 2 --voxels-per-pair 32"
                           " --modality ct --threads 1 --loader-threads 1 --device cpu --steps 1 --lr 1e-9 --init " +
                           kImported;
  Result r = sh(base + " -o " + dir_ + "/init_ok --spacing 1 1 2 --ct-window program");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("backbone initialised from"), std::string::npos) << r.out;
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

  r = sh(base + " -o " + dir_ + "/init_window --spacing 1 1 2 --ct-window paper");
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_NE(r.out.find("CT window: the weights expect [-175, 250] HU, this run uses [-1350, 1000] HU"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("--allow-preprocess-mismatch"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir_ + "/init_window/checkpoint_latest.safetensors"));
  r = sh(base + " -o " + dir_ + "/init_spacing --spacing 2 2 4 --ct-window program");
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_NE(r.out.find("spacing: the weights expect 1 x 1 x 2 mm, this run uses 2 x 2 x 4 mm"), std::string::npos)
      << r.out;

  r = sh(base + " -o " + dir_ + "/init_allowed --spacing 1 1 2 --ct-window paper --allow-preprocess-mismatch");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(slurp(dir_ + "/init_allowed/log.txt").find("warning (--allow-preprocess-mismatch): CT window"),
            std::string::npos);

  r = sh(base + " -o " + dir_ + "/init_arch --spacing 1 1 2 --ct-window program --base-channels 8");
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_NE(r.out.find("the backbone has --base-channels 2"), std::string::npos) << r.out;
}

TEST_F(ProbeInitApp, EvaluateWeightsAcceptsRefusesAndOverrides) {
  const std::string base = kBin + "/evaluate --mode linear --data " + dir_ +
                           "/small --steps 1 --batch 1 --patch 16 16 8"
                           " --folds 3 --fold 0 --threads 1 --weights " +
                           kImported;
  Result r = sh(base + " -o " + dir_ + "/ev_ok --spacing 1 1 2 --ct-window program");
  ASSERT_EQ(r.rc, 0) << r.out;
  r = sh(base + " -o " + dir_ + "/ev_window --spacing 1 1 2 --ct-window paper");
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_NE(r.out.find("CT window: the weights expect [-175, 250] HU"), std::string::npos) << r.out;
  r = sh(base + " -o " + dir_ + "/ev_spacing --spacing 2 2 4 --ct-window program");
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_NE(r.out.find("spacing: the weights expect 1 x 1 x 2 mm"), std::string::npos) << r.out;
  r = sh(base + " -o " + dir_ + "/ev_allowed --spacing 2 2 4 --ct-window program --allow-preprocess-mismatch");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(slurp(dir_ + "/ev_allowed/log.txt").find("warning (--allow-preprocess-mismatch): spacing"),
            std::string::npos);
  EXPECT_NE(slurp(dir_ + "/ev_allowed/config.json").find("\"allow_preprocess_mismatch\": true"), std::string::npos);
}
