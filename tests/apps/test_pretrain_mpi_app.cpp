// `mpiexec -n 2 ./pretrain` as a user runs it (issue 12), on two tiny phantoms: rank 0's run folder is
// complete and ./evaluate consumes its backbone; the ranks agree on the parameters at every checkpoint;
// resume of a 2-rank run on 2 ranks reproduces the uninterrupted losses bit for bit (CPU); a 1-rank job
// under the launcher equals a plain run; a 2-rank run resumes on 1 rank and a 1-rank run on 2, with the
// note on the batch; kill -9 of one rank ends the job with the launcher's message and leaves the last
// checkpoint intact (the run resumes from it). Built only when CMake found MPI and a launcher.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/apps/program_test_util.h"
#include "tests/sanitizer/under_asan.h"
#include "models/checkpoint.h"
#include "models/train_state.h"

namespace fs = std::filesystem;
using namespace hdssl;

namespace {
const std::string kBin = HDSSL_BINARY_DIR;
const std::string kPretrain = kBin + "/pretrain";
// Root in CI needs Open MPI's pair; oversubscription lets 2 ranks share fewer cores (tests/dist does the same).
// Under ASan, leak checking is off for what mpiexec starts (Open MPI's unloaded components: tests/dist).
const std::string kEnv =
    std::string("env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 ") +
    (hdssl::test::kUnderAsan ? "ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 " : "");
std::string launch(int ranks) { return kEnv + HDSSL_MPIEXEC + std::string(" -n ") + std::to_string(ranks) + " "; }

// The tiny configuration of test_pretrain_app.cpp: each step takes a fraction of a second on one core.
const std::string kTiny =
    " --patch 16 16 8 --batch-pairs 2 --voxels-per-pair 64 --base-channels 4 --scales 2 --spacing 6 6 12"
    " --modality ct --threads 1 --loader-threads 1 --lr 1e-3 --device cpu --log-every 1";  // a row every step

using Result = hdssl::test::ProgramResult;
using hdssl::test::run_command;
Result pretrain(int ranks, const std::string& args) {  // ranks 0: a plain run, no launcher
  return run_command((ranks ? launch(ranks) : "") + kPretrain + " " + args);
}

std::string scratch() {
  static std::string dir = [] {
    auto d = fs::temp_directory_path() / ("hdssl_pretrain_mpi_" + std::to_string(::getpid()));
    fs::remove_all(d);
    fs::create_directories(d);
    return d.string();
  }();
  return dir;
}
std::string phantoms() {  // two small unlabeled CT phantoms, written once by ./synth
  static std::string dir = [] {
    std::string d = scratch() + "/phantoms";
    Result r = run_command(kBin + "/synth -o " + d + " --cases 2 --seed 7 --unlabeled --spacing 4 4 8");
    EXPECT_EQ(r.code, 0) << r.output;
    return d;
  }();
  return dir;
}
using hdssl::test::read_text;
size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}
std::vector<std::string> losses(const std::string& run_dir) { return hdssl::test::metrics_losses(run_dir); }

// One uninterrupted 2-rank run of 6 steps (checkpoints at 3 and 6), shared by the tests below.
const std::string& two_rank_run() {
  static std::string out = [] {
    std::string o = scratch() + "/two";
    Result r = pretrain(2, "--data " + phantoms() + " -o " + o + kTiny + " --steps 6 --save-every 3");
    EXPECT_EQ(r.code, 0) << r.output;
    return o;
  }();
  return out;
}
}  // namespace

TEST(PretrainMpi, TwoRanksWriteOneRunFolderThatEvaluateConsumes) {
  const std::string out = two_rank_run();
  for (const char* f : {"config.json", "log.txt", "metrics.csv", "progress.png", "checkpoint_latest.safetensors",
                        "checkpoint_previous.safetensors", "checkpoint_final.safetensors", "backbone.safetensors"})
    EXPECT_TRUE(fs::exists(out + "/" + f)) << f;
  EXPECT_EQ(losses(out).size(), 6u);
  const nlohmann::json cfg = nlohmann::json::parse(read_text(out + "/config.json"));
  EXPECT_EQ(cfg.at("ranks"), 2);
  EXPECT_EQ(cfg.at("batch_pairs"), 2);
  EXPECT_EQ(cfg.at("batch_pairs_per_rank"), 2);
  EXPECT_EQ(cfg.at("batch_pairs_global"), 4);
  EXPECT_EQ(cfg.at("sync_bn"), false);
  EXPECT_EQ(cfg.at("gather_negatives"), false);
  const std::string log = read_text(out + "/log.txt");
  EXPECT_EQ(count(log, "hdssl pretrain: "), 1u) << log;  // only rank 0 writes the log
  EXPECT_NE(log.find("data parallel: 2 ranks (mpi), global batch 4 pairs"), std::string::npos) << log;
  // Every checkpoint: the parameter hashes of both ranks compared, equal.
  EXPECT_NE(log.find("step 3: parameters identical on all 2 ranks"), std::string::npos) << log;
  EXPECT_NE(log.find("step 6: parameters identical on all 2 ranks"), std::string::npos) << log;
  const models::TrainingMeta meta = models::read_training_meta(
      models::read_safetensors(out + "/checkpoint_final.safetensors"), out + "/checkpoint_final.safetensors");
  EXPECT_EQ(meta.step, 6);
  EXPECT_EQ(meta.extra.at("ranks"), "2");

  Result e = run_command(kBin + "/synth -o " + scratch() + "/labeled --cases 3 --seed 5 --spacing 8 8 16");
  ASSERT_EQ(e.code, 0) << e.output;
  // The spacing the backbone was pretrained at (checked).
  e = run_command(kBin + "/evaluate --mode linear --data " + scratch() + "/labeled -o " + scratch() +
                  "/eval --steps 2 --batch 1 --patch 16 16 8 --spacing 6 6 12 --base-channels 4 --scales 2 --folds 3"
                  " --threads 1 --weights " + out + "/backbone.safetensors");
  ASSERT_EQ(e.code, 0) << e.output;
  EXPECT_NE(read_text(scratch() + "/eval/log.txt").find("backbone weights: " + out + "/backbone.safetensors"),
            std::string::npos);
  EXPECT_TRUE(fs::exists(scratch() + "/eval/cv_table.md"));
}

TEST(PretrainMpi, ResumeOfATwoRankRunOnTwoRanksIsBitwiseIdentical) {
  const std::string whole = two_rank_run(), part = scratch() + "/two-resumed";
  Result r = pretrain(2, "--data " + phantoms() + " -o " + part + kTiny + " --steps 3 --save-every 3");
  ASSERT_EQ(r.code, 0) << r.output;
  r = pretrain(2, "--resume " + part + " --steps 6 --threads 1 --loader-threads 1 --device cpu");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(r.output.find("note: the checkpoint was written by a run of"), std::string::npos) << r.output;
  const auto a = losses(whole), b = losses(part);
  ASSERT_EQ(a.size(), 6u);
  EXPECT_EQ(a, b);
}

TEST(PretrainMpi, OneRankUnderTheLauncherEqualsAPlainRun) {
  const std::string plain = scratch() + "/plain1", launched = scratch() + "/launched1";
  Result r = pretrain(0, "--data " + phantoms() + " -o " + plain + kTiny + " --steps 3");
  ASSERT_EQ(r.code, 0) << r.output;
  r = pretrain(1, "--data " + phantoms() + " -o " + launched + kTiny + " --steps 3");
  ASSERT_EQ(r.code, 0) << r.output;
  ASSERT_EQ(losses(plain).size(), 3u);
  EXPECT_EQ(losses(plain), losses(launched));
  // Two ranks draw other data than one (each rank its own volume and pairs): the losses differ.
  EXPECT_NE(losses(plain)[0], losses(two_rank_run())[0]);
}

TEST(PretrainMpi, ResumesAcrossRankCountsWithTheNoteOnTheBatch) {
  // 2 ranks -> 1: the per-rank batch (--batch-pairs) is kept, the global batch goes from 4 to 2 pairs.
  const std::string a = scratch() + "/two-to-one";
  Result r = pretrain(2, "--data " + phantoms() + " -o " + a + kTiny + " --steps 3");
  ASSERT_EQ(r.code, 0) << r.output;
  r = pretrain(0, "--resume " + a + " --steps 5 --threads 1 --loader-threads 1 --device cpu");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("note: the checkpoint was written by a run of 2 rank(s), this session has 1: --batch-pairs 2 "
                          "is per rank, so the global batch changes from 4 to 2 pairs"),
            std::string::npos) << r.output;
  EXPECT_EQ(losses(a).size(), 5u);
  EXPECT_EQ(nlohmann::json::parse(read_text(a + "/config.json")).at("batch_pairs_global"), 2);
  // The first 3 steps are the 2-rank run's.
  const auto two = losses(two_rank_run()), resumed = losses(a);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(two[i], resumed[i]) << i;

  // 1 rank -> 2.
  const std::string b = scratch() + "/one-to-two";
  r = pretrain(0, "--data " + phantoms() + " -o " + b + kTiny + " --steps 3");
  ASSERT_EQ(r.code, 0) << r.output;
  r = pretrain(2, "--resume " + b + " --steps 5 --threads 1 --loader-threads 1 --device cpu");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("note: the checkpoint was written by a run of 1 rank(s), this session has 2"),
            std::string::npos) << r.output;
  EXPECT_EQ(losses(b).size(), 5u);
  EXPECT_EQ(nlohmann::json::parse(read_text(b + "/config.json")).at("batch_pairs_global"), 4);
  EXPECT_NE(read_text(b + "/log.txt").find("step 5: parameters identical on all 2 ranks"), std::string::npos);
}

TEST(PretrainMpi, SyncBatchNormAndGatheredNegativesRun) {
  const std::string out = scratch() + "/sync";
  Result r = pretrain(2, "--data " + phantoms() + " -o " + out + kTiny + " --steps 2 --sync-bn --gather-negatives");
  ASSERT_EQ(r.code, 0) << r.output;
  const nlohmann::json cfg = nlohmann::json::parse(read_text(out + "/config.json"));
  EXPECT_EQ(cfg.at("sync_bn"), true);
  EXPECT_EQ(cfg.at("gather_negatives"), true);
  const std::string log = read_text(out + "/log.txt");
  EXPECT_NE(log.find("BatchNorm synchronized, negatives gathered from every rank"), std::string::npos) << log;
  EXPECT_NE(log.find("step 2: parameters identical on all 2 ranks"), std::string::npos) << log;
  // The union's InfoNCE (2 x 2 pairs x 64 voxels) differs from the per-rank one of the plain 2-rank run.
  EXPECT_NE(losses(out)[0], losses(two_rank_run())[0]);
}

TEST(PretrainMpi, LogEveryNStepsOnTwoRanks) {
  // Between log steps nothing is read to the host; the ranks still agree on every step (the stop flag).
  const std::string out = scratch() + "/log-every";
  Result r = pretrain(2, "--data " + phantoms() + " -o " + out + kTiny + " --steps 10 --save-every 100 --log-every 4");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto rows = losses(out);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].substr(0, 2), "4 ");
  EXPECT_EQ(rows[2].substr(0, 3), "10 ");
  EXPECT_NE(read_text(out + "/log.txt").find("step 10: parameters identical on all 2 ranks"), std::string::npos);
}

TEST(PretrainMpi, KillingOneRankEndsTheJobAndKeepsTheLastCheckpoint) {
  const std::string out = scratch() + "/killed", log_path = scratch() + "/killed.out";
  const std::string cmd = "exec " + launch(2) + kPretrain + " --data " + phantoms() + " -o " + out + kTiny +
                          " --steps 100000 --save-every 4 > " + log_path + " 2>&1";
  pid_t launcher = ::fork();
  if (launcher == 0) {
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), (char*)nullptr);
    ::_exit(127);
  }
  // Wait for two checkpoints (so that one was written after a rename), then kill -9 rank 1.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  int status = 0;
  bool ended = false;
  while (!fs::exists(out + "/checkpoint_previous.safetensors") && std::chrono::steady_clock::now() < deadline &&
         !(ended = ::waitpid(launcher, &status, WNOHANG) == launcher))
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  if (!ended && !fs::exists(out + "/checkpoint_previous.safetensors"))
    ::kill(launcher, SIGKILL), ::waitpid(launcher, &status, 0);
  ASSERT_TRUE(!ended && fs::exists(out + "/checkpoint_previous.safetensors")) << read_text(log_path);
  pid_t rank1 = -1;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string stat = read_text(e.path().string() + "/stat");  // "pid (comm) state ppid ..."
    const size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 2));
    char state;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid != launcher) continue;
    std::string env = read_text(e.path().string() + "/environ");
    std::replace(env.begin(), env.end(), '\0', '\n');
    if (env.find("\nOMPI_COMM_WORLD_RANK=1\n") != std::string::npos || env.find("\nPMI_RANK=1\n") != std::string::npos)
      rank1 = pid_t(std::stol(name));
  }
  ASSERT_GT(rank1, 0) << "rank 1 not found among the launcher's children";
  ASSERT_EQ(::kill(rank1, SIGKILL), 0);
  ::waitpid(launcher, &status, 0);
  const std::string output = read_text(log_path);
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  EXPECT_NE(code, 0) << output;
  EXPECT_TRUE(output.find("signal 9") != std::string::npos || output.find("Killed") != std::string::npos) << output;

  // The last checkpoint is intact (or, had the kill hit rank 0's save, the previous one): --resume continues.
  const models::TrainingMeta meta = models::read_training_meta(
      models::read_safetensors(out + "/checkpoint_latest.safetensors"), out + "/checkpoint_latest.safetensors");
  EXPECT_EQ(meta.step % 4, 0);
  EXPECT_GE(meta.step, 8);
  Result r = pretrain(2, "--resume " + out + " --steps " + std::to_string(meta.step + 2) +
                             " --threads 1 --loader-threads 1 --device cpu");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("resumed at step " + std::to_string(meta.step)), std::string::npos) << r.output;
}
