// ./pretrain: dense self-supervised pretraining (docs/method.md sections 1-5) on a folder of NIfTI volumes.
//
//   ./pretrain --data DIR -o RUN                 the paper's method ("ours") with the paper's defaults
//   ./pretrain --demo                            synthesizes CT phantoms, pretrains a small model on the CPU
//   ./pretrain --resume RUN                      continues a run from its last intact checkpoint
//                                                (also: ./pretrain -o RUN --resume)
//   mpirun -np N ./pretrain --data DIR -o RUN    data-parallel over N ranks (dist/, docs/scaling.md): rank 0
//                                                owns the run folder; --batch-pairs is per rank
//
// The run folder gets config.json (the effective settings), log.txt, metrics.csv, progress.png,
// checkpoint_latest.safetensors (+ checkpoint_previous.safetensors, the one before) and at the end
// checkpoint_final.safetensors and backbone.safetensors (reference FPN3d names, loads in PyTorch).
// The training step itself is models::PretrainStep (models/pretrain_step.cpp, docs/pretraining-step.md);
// every setting is declared once in declare_settings() (apps/common/settings.h). Exit codes: apps/README.md.
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <new>
#include <optional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>

#include "apps/common/ct_window_setting.h"
#include "apps/common/device_setup.h"
#include "apps/common/plot.h"
#include "apps/common/progress.h"
#include "apps/common/run_folder.h"
#include "apps/common/settings.h"
#include "autograd/optim.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/nifti.h"
#include "data/phantom.h"
#include "data/preprocess.h"
#include "data/preprocess_compat.h"
#include "dist/communicator.h"
#include "dist/gather_rows.h"
#include "dist/gradient_allreduce.h"
#include "dist/sync_batchnorm.h"
#include "engine/backend.h"
#include "engine/batch_uploader.h"
#include "eval/online_probe.h"
#include "models/checkpoint.h"
#include "models/memory_estimate.h"
#include "models/pretrain_step.h"
#include "models/segmentation.h"
#include "models/train_state.h"
#include "models/upload_inputs.h"

using namespace hdssl;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// Every setting of a run. Declared (flag, JSON key, range, help, kind) in declare_settings() only.
struct Options {
  std::string data, out, cache, modality = "auto", arch = "ours", aug = "local", device = app::kDefaultDevice;
  std::string batch_volumes = "one", ct_window = "program", vox2vec_order = "program";  // issue 11 (a), (d), (f)
  std::vector<int64_t> shuffle_block_min{2, 2, 1};                                    // issue 11 (e)
  int64_t steps = 50000, save_every = 1000, log_every = 10;
  int batch_pairs = 10, voxels_per_pair = 1024, base = 0, scales = 0, blocks = 2, threads = 0, loader_threads = 2;
  std::vector<int64_t> patch{128, 128, 32};
  std::vector<double> spacing;  // empty: the modality's preset
  double lr = 3e-4, lambda = 10.0, tau = 0.1, clip = 1.0;
  bool skip_memory_check = false;
  bool no_restoration = false, restoration_1x1 = false, freeze_projections = false, resume = false, demo = false;
  bool sync_bn = false, gather_negatives = false;  // issue 12: only under mpirun with N > 1 ranks
  bool deterministic = false;
  bool cuda_graph = false;  // issue 10 (7): the captured step (engine/step_graph.h)
  std::string precision = "fp32";  // issue 10 (6): mixed precision (docs/mixed-precision.md)
  uint64_t seed = 0;
  int64_t debug_nan_at = -1;  // testing hook: poisons view A of this step
  std::string init;                        // issue 15 (3): start from this backbone
  bool allow_preprocess_mismatch = false;
  std::string probe_data;                  // issue 11 (5): the online probe
  int64_t probe_every = 500, probe_steps = 50;
  int probe_cases = 2, probe_val_cases = 1;
};

// The one declaration of every setting: its flag, its key in config.json and in the checkpoint, its
// range, its help and what --resume does with it (app::Kind). Adding a setting is one line here.
void declare_settings(app::SettingsTable& t, Options& o) {
  using K = app::Kind;
  t.add("--data", "data", o.data, "folder searched recursively for NIfTI volumes (labelsTr/ is skipped)", K::Resumable);
  t.add("-o,--out", "out", o.out, "run folder (default runs/pretrain-ARCH-TIME)", K::Recorded);
  t.add("--cache", "cache", o.cache, "folder for preprocessed volumes, reused by later runs (with --modality ct|mri)",
        K::NotSaved);
  t.add("--modality", "modality", o.modality, "ct | mri | auto (auto: CT when a volume has values below -200)",
        K::Defines)
      .one_of({"ct", "mri", "auto"});
  t.add("--steps", "steps", o.steps, "optimizer steps in total (on --resume: extends the run)", K::Resumable)
      .at_least(1);
  t.add("--batch-pairs", "batch_pairs", o.batch_pairs,
        "patch pairs per step and rank (B; mpirun -np N: global batch N x B)", K::Defines).at_least(1);
  t.add("--patch", "patch", o.patch, "patch size X Y Z in voxels, each divisible by 2^(scales-1)", K::Defines, 3)
      .at_least(1);
  t.add("--voxels-per-pair", "voxels_per_pair", o.voxels_per_pair, "positive voxel pairs per patch pair (n)",
        K::Defines)
      .at_least(1);
  t.add("--lr", "lr", o.lr, "Adam learning rate (may change on --resume; Adam's moments are kept)", K::Resumable)
      .above(0).finite();
  t.add("--lambda", "lambda", o.lambda, "weight of the restoration loss Lr", K::Defines).at_least(0).finite();
  t.add("--tau", "tau", o.tau, "InfoNCE temperature", K::Defines).above(0).finite();
  t.add("--clip", "clip", o.clip, "clip the gradient norm to this before Adam; 0: no clipping", K::Defines)
      .at_least(0)
      .finite();
  t.add("--arch", "arch", o.arch, "ours (balanced FPN, base 32, 5 scales) | vox2vec (base 16, 6 scales, raw concat)",
        K::Defines)
      .one_of({"ours", "vox2vec"});
  t.add("--aug", "aug", o.aug, "local (shuffle, Bezier, in-painting) | vox2vec (blur/sharpen, noise, window) | none",
        K::Defines)
      .one_of({"local", "vox2vec", "none"});
  // The published program's protocol (docs/method.md section 9, (a) (d) (e) (f)); legacy(): a run saved before
  // these settings existed had the other behaviour, and keeps it on --resume.
  t.add("--batch-volumes", "batch_volumes", o.batch_volumes,
        "one (all pairs of a step cut from one volume, the published program) | per-pair (a volume per pair)",
        K::Defines)
      .one_of({"one", "per-pair"})
      .legacy("per-pair");
  app::add_ct_window(t, o.ct_window);
  t.add("--vox2vec-order", "vox2vec_order", o.vox2vec_order,
        "vox2vec augmentations: program (blur/sharpen, noise in HU, window + clip last) | legacy (window first)",
        K::Defines)
      .one_of({"program", "legacy"})
      .legacy("legacy");
  t.add("--shuffle-block-min", "shuffle_block_min", o.shuffle_block_min,
        "local pixel shuffling: smallest block side X Y Z (block = max(this, patch / 20))", K::Defines, 3)
      .at_least(1).legacy(std::vector<int64_t>{1, 1, 1});
  t.add("--no-restoration", "no_restoration", o.no_restoration, "train with InfoNCE only (no Lr)", K::Defines);
  t.add("--restoration-1x1", "restoration_1x1", o.restoration_1x1,
        "restoration head = one 1x1x1 conv (the published program)", K::Defines);
  t.add("--freeze-projections", "freeze_projections", o.freeze_projections,
        "keep the per-scale projections at their random init", K::Defines);
  t.add("--base-channels", "base_channels", o.base, "channels of pyramid level 0 (default: 32 ours, 16 vox2vec)",
        K::Defines)
      .at_least(1);
  t.add("--scales", "scales", o.scales, "pyramid levels (default: 5 ours, 6 vox2vec)", K::Defines).at_least(1);
  t.add("--blocks", "blocks", o.blocks, "ResBlocks per level", K::Defines).at_least(1);
  t.add("--spacing", "spacing", o.spacing, "resample to X Y Z mm (default: CT 1 1 2, MRI 1.5 1.5 1.5)", K::Defines, 3)
      .above(0).finite();
  t.add("--device", "device", o.device, "cpu | cuda | cuda:N | auto (the first GPU when there is one, else cpu)",
        K::Recorded);
  t.add("--deterministic", "deterministic", o.deterministic,
        "the same bits run after run on a GPU too: deterministic cuDNN algorithms, no float atomics (slower)",
        K::Recorded);
  t.add("--precision", "precision", o.precision,
        "fp32 | bf16 (convolutions and GEMMs in bfloat16, losses and weights in float32; may change on --resume)",
        K::Resumable).one_of({"fp32", "bf16"});
  t.add("--cuda-graph", "cuda_graph", o.cuda_graph,
        "capture the step after 2 eager steps and replay it (a CUDA graph; on the CPU a recorder): one process "
        "only, fixed batch shapes; a log step's checks come after its update (docs/pretraining-step.md section 9)",
        K::Recorded);
  t.add("--threads", "threads", o.threads,
        "CPU threads for the math (0: all cores; under mpirun: cores / ranks on the node)", K::NotSaved).at_least(0);
  t.add("--loader-threads", "loader_threads", o.loader_threads, "threads preparing batches ahead", K::NotSaved)
      .at_least(1);
  t.add("--skip-memory-check", "skip_memory_check", o.skip_memory_check,
        "start even when the estimated peak memory exceeds what is available (models/memory_estimate.h)", K::NotSaved);
  t.add("--seed", "seed", o.seed, "seed of the initialization and of the data sampling", K::Defines);
  t.add("--save-every", "save_every", o.save_every, "steps between checkpoints", K::Resumable).at_least(1);
  t.add("--log-every", "log_every", o.log_every,
        "steps between reads of the loss terms and the gradient norm to the host (metrics.csv rows, the NaN/Inf "
        "check; checkpoint steps are always checked)", K::Resumable).at_least(1);
  t.add("--init", "init", o.init,
        "start from this backbone (backbone.safetensors, imported or a pretraining checkpoint); heads start fresh",
        K::Defines);
  t.add("--allow-preprocess-mismatch", "allow_preprocess_mismatch", o.allow_preprocess_mismatch,
        "use --init weights whose recorded preprocessing differs from this run's", K::Recorded);
  t.add("--probe-data", "probe_data", o.probe_data,
        "online probe: labeled dataset (nnU-Net v2 or MSD); a linear probe every --probe-every steps",
        K::Resumable);
  t.add("--probe-every", "probe_every", o.probe_every, "online probe: steps between probes", K::Resumable).at_least(1);
  t.add("--probe-cases", "probe_cases", o.probe_cases, "online probe: cases the head trains on (the first ones)",
        K::Resumable).at_least(1);
  t.add("--probe-val-cases", "probe_val_cases", o.probe_val_cases,
        "online probe: held-out cases giving the Dice (the next ones)", K::Resumable).at_least(1);
  t.add("--probe-steps", "probe_steps", o.probe_steps, "online probe: head training steps per probe", K::Resumable)
      .at_least(1);
  // Data parallelism (mpirun -np N, docs/scaling.md); no effect on a single process.
  t.add("--sync-bn", "sync_bn", o.sync_bn, "mpirun: BatchNorm statistics over all ranks' batches (default: per rank)",
        K::Defines);
  t.add("--gather-negatives", "gather_negatives", o.gather_negatives,
        "mpirun: InfoNCE negatives from every rank (all-gathered embeddings; default: the rank's own)", K::Defines);
}

// The gradient all-reduce of a data-parallel run, in the step's hook (models/pretrain_step.h).
struct MpiReducer : models::GradientReducer {
  explicit MpiReducer(dist::Communicator& comm) : ar(comm) {}
  dist::GradientAllreduce ar;
  void reduce(const std::vector<Variable>& p) override { ar.all_reduce_mean(p); }
};

// Rank 0's string on every rank (collective).
std::string broadcast_string(dist::Communicator& comm, std::string s) {
  uint64_t n = s.size();
  comm.broadcast(&n, sizeof(n), 0);
  s.resize(size_t(n));
  if (n > 0) comm.broadcast(s.data(), size_t(n), 0);
  return s;
}

// CPU threads of one rank: --threads when given, else the cores this process may use, shared with the
// other ranks of the node unless the launcher already bound each rank to its own cores.
int rank_threads(int requested, const dist::Communicator& comm) {
  if (requested > 0 || comm.size() == 1) return requested;  // 0 on a single process: every core, as before
  cpu_set_t set;
  const int hw = int(std::max(1u, std::thread::hardware_concurrency()));
  const int allowed = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : hw;
  return std::max(1, std::min(allowed, hw / dist::local_size()));
}

// With CUDA, one GPU per rank: the rank's local index picks it by restricting CUDA_VISIBLE_DEVICES before
// the backend starts (the backend uses device 0). A launcher that already gave each rank one GPU is kept.
void pick_rank_gpu(const std::string& device, const dist::Communicator& comm) {
  if (comm.size() == 1 || device == "cpu") return;
  std::vector<std::string> ids;
  if (const char* v = std::getenv("CUDA_VISIBLE_DEVICES")) {
    std::stringstream ss(v);
    for (std::string id; std::getline(ss, id, ',');) if (!id.empty()) ids.push_back(id);
    if (ids.size() <= 1) return;
  }
  const int lr = dist::local_rank();
  ::setenv("CUDA_VISIBLE_DEVICES", (ids.empty() ? std::to_string(lr) : ids[size_t(lr) % ids.size()]).c_str(), 1);
}

std::atomic<int> g_signal{0};
extern "C" void on_signal(int s) { g_signal = s; }

// A run stops with one of these: the message is printed, the process exits with the code.
// (codes: apps/README.md).
struct Fatal {
  std::string message;
  int code = 1;
};

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof(b), f, v);
  return b;
}

models::PretrainConfig model_config(const Options& o) {
  models::PretrainConfig c = o.arch == "vox2vec" ? models::PretrainConfig::vox2vec() : models::PretrainConfig::ours();
  if (o.base > 0) c.base = o.base;
  if (o.scales > 0) c.scales = o.scales;
  c.blocks = o.blocks;
  c.tau = o.tau;
  c.lambda = o.lambda;
  c.restoration = !o.no_restoration;  // independent of --arch: the ablation toggles it alone
  c.restoration_single_conv = o.restoration_1x1;
  c.freeze_projections = o.freeze_projections;
  return c;
}

// NIfTI images under dir, recursively, sorted; label folders (labelsTr, labelsTs) are skipped.
std::vector<std::string> find_images(const std::string& dir) {
  if (!fs::is_directory(dir)) throw Fatal{"--data " + dir + ": not a folder", 3};
  return data::find_nifti_files(dir);
}

data::PreprocessConfig preprocess_config(const Options& o, data::Modality m) {
  data::PreprocessConfig p = m == data::Modality::CT ? data::PreprocessConfig::ct() : data::PreprocessConfig::mri();
  if (o.spacing.size() == 3) p.spacing = {o.spacing[0], o.spacing[1], o.spacing[2]};
  p.min_size = {o.patch[0], o.patch[1], o.patch[2]};
  if (m == data::Modality::CT) p.set_ct_window(o.ct_window);
  return p;
}

// Reads and preprocesses every volume; unreadable ones and ones smaller than the patch are skipped with
// a warning. Throws Fatal when nothing usable remains.
std::vector<data::PreprocessedVolume> load_volumes(const Options& o, app::RunFolder& run, std::string* modality_used) {
  std::vector<std::string> files = find_images(o.data);
  if (files.empty())
    throw Fatal{"--data " + o.data + ": no NIfTI files (.nii, .nii.gz, .hdr) found in the folder or below it", 3};
  run.log("found " + std::to_string(files.size()) + " NIfTI file(s) under " + o.data);
  std::vector<data::PreprocessedVolume> vols;
  int unreadable = 0, small = 0;
  std::string first_problem;
  for (const auto& f : files) {
    try {
      data::Modality m = o.modality == "mri" ? data::Modality::MRI : data::Modality::CT;
      data::PreprocessedVolume v;
      data::PreprocessConfig pc;
      if (o.modality == "auto") {  // needs the intensities first, so no cache
        data::NiftiImage img = data::read_nifti(f);
        m = img.info.stats.min < -200 ? data::Modality::CT : data::Modality::MRI;
        pc = preprocess_config(o, m);
        v = data::preprocess(img, pc);
      } else {
        pc = preprocess_config(o, m);
        v = data::load_preprocessed(f, pc, o.cache);
      }
      const auto& rd = v.record.resampled_dims;
      if (rd[0] < o.patch[0] || rd[1] < o.patch[1] || rd[2] < o.patch[2]) {
        std::ostringstream os;
        os << f << ": " << rd[0] << "x" << rd[1] << "x" << rd[2] << " voxels after resampling to " << pc.spacing[0]
           << "x" << pc.spacing[1] << "x" << pc.spacing[2] << " mm, smaller than the patch " << o.patch[0] << "x"
           << o.patch[1] << "x" << o.patch[2];
        run.log("skipped: " + os.str());
        if (first_problem.empty()) first_problem = os.str();
        ++small;
        continue;
      }
      std::string mod = m == data::Modality::CT ? "ct" : "mri";
      if (modality_used->empty()) *modality_used = mod;
      else if (*modality_used != mod) *modality_used = "mixed";
      vols.push_back(std::move(v));
    } catch (const std::exception& e) {
      run.log(std::string("skipped unreadable: ") + e.what());
      if (first_problem.empty()) first_problem = e.what();
      ++unreadable;
    }
  }
  if (vols.empty())
    throw Fatal{"no usable volume under " + o.data + ": " + std::to_string(unreadable) + " unreadable, " +
                std::to_string(small) + " smaller than the patch (first: " + first_problem + ")", 3};
  run.log("using " + std::to_string(vols.size()) + " volume(s) (" + *modality_used + "), skipped " +
          std::to_string(unreadable + small));
  return vols;
}

// The demo: CT phantoms (made once, reused), a small network, a few minutes on two CPU cores.
void apply_demo(Options& o, const CLI::App& app, bool write) {
  auto unset = [&](const char* flag) { return app.count(flag) == 0; };
  if (unset("--data")) o.data = "hdssl-demo/phantoms";
  if (unset("-o")) {  // a fresh folder each time (hdssl-demo/run, run-2, ...); --resume takes the first
    o.out = "hdssl-demo/run";
    for (int i = 2; !o.resume && fs::exists(o.out + "/checkpoint_latest.safetensors"); ++i)
      o.out = "hdssl-demo/run-" + std::to_string(i);
  }
  if (unset("--steps")) o.steps = 300;
  if (unset("--batch-pairs")) o.batch_pairs = 2;
  if (unset("--patch")) o.patch = {32, 32, 16};
  if (unset("--voxels-per-pair")) o.voxels_per_pair = 256;
  if (unset("--base-channels")) o.base = 8;
  if (unset("--scales")) o.scales = 3;
  if (unset("--spacing")) o.spacing = {3.0, 3.0, 6.0};
  if (unset("--lr")) o.lr = 1e-3;
  if (unset("--save-every")) o.save_every = 50;
  if (unset("--modality")) o.modality = "ct";
  if (unset("--device")) o.device = "cpu";
  if (write && (!fs::exists(o.data) || find_images(o.data).empty())) {
    std::cout << "demo: writing 4 synthetic CT phantoms to " << o.data << " ..." << std::endl;
    data::PhantomConfig pc;
    pc.spacing = {2.0, 2.0, 4.0};
    data::write_phantom_dataset(o.data, 4, /*seed=*/2024, pc, /*unlabeled=*/true);
  }
}

// The most recent intact checkpoint of the run: latest, else previous (each refusal is reported).
std::string pick_checkpoint(app::RunFolder& run) {
  for (const char* name : {"checkpoint_latest.safetensors", "checkpoint_previous.safetensors"}) {
    if (!run.exists(name)) continue;
    try {
      models::SafeTensors st = models::read_safetensors(run.path(name));
      models::read_training_meta(st, run.path(name));
      return run.path(name);
    } catch (const models::CheckpointError& e) {
      // Set it aside (kept for inspection), so that the next save does not demote it to "previous".
      const std::string aside = run.path(std::string(name) + ".refused");
      run.log(std::string("refusing ") + name + ": " + e.what() + "; moved to " + aside);
      fs::rename(run.path(name), aside);
    }
  }
  return "";
}

// Refusals that need more than one setting (each setting's own range is checked by the table).
void check_combinations(const Options& o) {
  if (!o.init.empty() && o.scales == 0) return;  // --init: the backbone file tells, checked again after read_init()
  const int scales = o.scales > 0 ? o.scales : (o.arch == "vox2vec" ? models::PretrainConfig::vox2vec().scales
                                                                    : models::PretrainConfig::ours().scales);
  const int64_t m = int64_t(1) << (scales - 1);
  for (int64_t p : o.patch)
    if (p % m != 0)
      throw app::UsageError("--patch " + std::to_string(o.patch[0]) + " " + std::to_string(o.patch[1]) + " " +
                            std::to_string(o.patch[2]) + ": each size must be a multiple of 2^(scales-1) = " +
                            std::to_string(m) + " with " + std::to_string(scales) + " scales (--scales, --arch)");
}

// Refuses (exit 3) a configuration whose estimated peak memory does not fit what this process may use: host
// memory, and on a GPU the device's free memory.
void check_memory(const Options& o, const models::PretrainConfig& mc, Device device, int threads,
                  const std::vector<data::PreprocessedVolume>& vols, app::RunFolder& run) {
  models::MemoryConfig mem{mc, o.batch_pairs, {o.patch[0], o.patch[1], o.patch[2]}, o.voxels_per_pair,
                           device.is_cuda(), threads, /*prefetch=*/2, /*dataset_bytes=*/0};
  for (const auto& v : vols) mem.dataset_bytes += int64_t(v.image.data.size() * sizeof(float) + v.body.data.size());
  mem.bf16 = o.precision == "bf16";
  std::string source;
  const int64_t host = models::available_host_memory(&source);
  const int64_t gpu = models::available_device_memory(device);  // -1 on the CPU
  if (std::string why = models::memory_refusal(mem, host, source, gpu); !why.empty()) throw Fatal{why, 3};
  const models::MemoryEstimate e = models::estimate_pretrain_memory(mem);
  run.log("memory estimate: " + fmt("%.2f", double(e.host) / double(1 << 30)) + " GiB host" +
          (host > 0 ? " of " + fmt("%.2f", double(host) / double(1 << 30)) + " GiB available (" + source + ")" : "") +
          (gpu >= 0 ? ", " + fmt("%.2f", double(e.device) / double(1 << 30)) + " GiB GPU of " +
                          fmt("%.2f", double(gpu) / double(1 << 30)) + " GiB free"
                    : ""));
}

// --init: reads the backbone file and takes its architecture (base, scales, blocks) where the flags leave
// it open; a flag that contradicts the file is refused (exit 2).
models::SafeTensors read_init(Options& o, const app::SettingsTable& table) {
  models::SafeTensors st;
  models::FPN3dConfig f;
  try {
    st = models::read_safetensors(o.init);
    f = models::fpn_config_of(st, models::backbone_prefix_of(st));
  } catch (const Error& e) {
    throw Fatal{std::string("--init: ") + e.what(), 1};
  }
  auto take = [&](const char* flag, int& v, int file, bool given) {
    if (given && v != file)
      throw Fatal{std::string("--init ") + o.init + ": the backbone has " + flag + " " + std::to_string(file) +
                  ", the command line asks for " + std::to_string(v) + " (drop " + flag + ")", 2};
    v = file;
  };
  take("--base-channels", o.base, f.base, o.base > 0);
  take("--scales", o.scales, f.scales, o.scales > 0);
  take("--blocks", o.blocks, f.blocks, table.given("--blocks"));
  return st;
}

// --init: refuses (exit 2) weights that expect another preprocessing than this run's, unless allowed.
void check_init_preprocessing(const Options& o, const models::SafeTensors& st, const data::PreprocessConfig& pc,
                              app::RunFolder& run) {
  std::optional<data::PreprocessConfig> expected = data::expected_preprocessing(st.metadata, "--init " + o.init);
  if (!expected) {
    run.log("--init " + o.init + " records no preprocessing: not checked");
    return;
  }
  const std::string why =
      data::preprocess_mismatch_message("--init " + o.init, *expected, pc, "--allow-preprocess-mismatch");
  if (why.empty()) return;
  if (!o.allow_preprocess_mismatch) throw Fatal{why, 2};
  run.log("warning (--allow-preprocess-mismatch): " + data::preprocess_differences(*expected, pc));
}

// --probe-data: the online probe's cases, read and preprocessed once as the pretraining preprocesses.
std::unique_ptr<eval::OnlineProbe> make_probe(const Options& o, const data::PreprocessConfig& pc, app::RunFolder& run) {
  if (o.probe_data.empty()) return nullptr;
  eval::OnlineProbeConfig c;
  c.train_cases = o.probe_cases;
  c.val_cases = o.probe_val_cases;
  c.steps = o.probe_steps;
  c.patch = {o.patch[0], o.patch[1], o.patch[2]};
  c.seed = o.seed;
  try {
    if (data::read_labeled_dataset(o.probe_data).modality != pc.modality)
      throw Fatal{"--probe-data " + o.probe_data + ": its modality differs from the pretraining data's", 2};
    auto p = std::make_unique<eval::OnlineProbe>(o.probe_data, pc, c, o.cache);
    std::string tr, va;
    for (const auto& id : p->train_ids()) tr += " " + id;
    for (const auto& id : p->val_ids()) va += " " + id;
    run.log("online probe every " + std::to_string(o.probe_every) + " steps: linear head, " +
            std::to_string(o.probe_steps) + " steps on" + tr + "; Dice on" + va + " (" + o.probe_data + ")");
    return p;
  } catch (const data::DataError& e) {
    throw Fatal{std::string("--probe-data: ") + e.what(), 3};
  }
}

int run_pretraining(Options& o, app::SettingsTable& table, const CLI::App& app, dist::Communicator& comm) {
  const bool root = comm.is_root();
  const int ranks = comm.size();
  if (o.demo) apply_demo(o, app, root);
  if (ranks > 1) comm.barrier();  // the demo's phantoms exist
  if (o.out.empty()) {
    if (o.resume) throw Fatal{"--resume needs the run folder: --resume RUN (or -o RUN --resume)", 2};
    char b[32];
    std::time_t t = std::time(nullptr);
    std::strftime(b, sizeof(b), "%Y%m%d-%H%M%S", std::localtime(&t));
    o.out = "runs/pretrain-" + o.arch + "-" + b;
  }
  if (ranks > 1) o.out = broadcast_string(comm, o.out);  // rank 0's clock names the folder
  // Rank 0 owns the run folder (lock, log, metrics, checkpoints); the other ranks only read from it.
  std::unique_ptr<app::RunFolder> run_ptr;
  try {
    run_ptr = root ? std::make_unique<app::RunFolder>(o.out)
                   : std::make_unique<app::RunFolder>(o.out, app::RunFolder::Reader{});
  } catch (const Error& e) {
    throw Fatal{e.what(), 1};
  }
  app::RunFolder& run = *run_ptr;

  // Resume: the run's own settings win, except the ones that may change between sessions (app::Kind).
  std::string ckpt;
  models::TrainingMeta meta;
  const bool has_checkpoint =
      run.exists("checkpoint_latest.safetensors") || run.exists("checkpoint_previous.safetensors");
  if (root && o.resume && !has_checkpoint) {
    run.log("--resume: " + o.out + " holds no checkpoint yet; starting from step 0");
    o.resume = false;
  }
  if (root && o.resume) {
    ckpt = pick_checkpoint(run);
    if (ckpt.empty()) throw Fatal{"--resume: no intact checkpoint in " + o.out + " (see the refusals above)"};
  } else if (root && has_checkpoint) {
    throw Fatal{"the run folder " + o.out +
                    " already holds a checkpoint: add --resume to continue it, or choose another -o", 2};
  }
  if (ranks > 1) {  // rank 0's choice (it may have set a refused checkpoint aside); the run folder is shared
    ckpt = broadcast_string(comm, ckpt);
    o.resume = !ckpt.empty();
  }
  int saved_ranks = ranks;
  if (o.resume) {
    models::SafeTensors st = models::read_safetensors(ckpt);
    meta = models::read_training_meta(st, ckpt);
    for (const std::string& note : table.resume(json::parse(meta.data_json))) run.log(note);
    saved_ranks = meta.extra.count("ranks") ? std::stoi(meta.extra.at("ranks")) : 1;  // before issue 12: one
  }
  if (o.data.empty()) throw Fatal{"--data DIR is required (or --demo)", 2};
  models::SafeTensors init_st;
  if (!o.init.empty() && !o.resume) {  // on --resume the checkpoint holds the backbone
    init_st = read_init(o, table);
    try {
      check_combinations(o);
    } catch (const app::UsageError& e) {
      throw Fatal{std::string("--init ") + o.init + ": " + e.what(), 2};
    }
  }

  // Threads and device.
  const int threads = app::set_math_threads(rank_threads(o.threads, comm));
  pick_rank_gpu(o.device, comm);
  Device device;
  try {
    device = app::open_device(o.device);
  } catch (const Error& e) {  // an unknown name, or a GPU asked for where none is usable: the command line's
    throw Fatal{e.what(), 2};  // fault on this machine
  }
  run.log("hdssl pretrain: " + o.out + (o.resume ? " (resuming from " + ckpt + ")" : ""));
  run.log(app::device_line(o.device, device));
  hdssl::set_deterministic(o.deterministic);
  if (o.deterministic) run.log("deterministic mode: deterministic cuDNN algorithms, no float atomics");
  o.device = device.str();  // "auto" resolved, as recorded in config.json
  std::string modality_used;
  std::vector<data::PreprocessedVolume> vols;
  if (root) vols = load_volumes(o, run, &modality_used);  // first, so that a --cache is written once
  if (ranks > 1) comm.barrier();
  if (!root) vols = load_volumes(o, run, &modality_used);
  const data::PreprocessConfig run_pc =
      preprocess_config(o, modality_used == "mri" ? data::Modality::MRI : data::Modality::CT);
  if (!o.init.empty() && !o.resume) check_init_preprocessing(o, init_st, run_pc, run);
  // The online probe runs on rank 0 only: it reads a copy of the backbone, the other ranks never wait on it.
  std::unique_ptr<eval::OnlineProbe> probe = root ? make_probe(o, run_pc, run) : nullptr;

  // Model and optimizer, after checking that the step's memory fits (models/memory_estimate.h): a run
  // that cannot fit is refused now with exit 3 and settings that would fit, not killed by the OOM killer.
  models::PretrainConfig mc = model_config(o);
  if (!o.skip_memory_check) check_memory(o, mc, device, threads, vols, run);
  Rng init_rng(o.seed, /*stream=*/1);
  models::Pretrainer model(mc, init_rng, {DType::F32, Device::cpu()});
  if (!o.init.empty() && !o.resume) {
    try {
      models::load_module_state(model.backbone(), init_st, models::backbone_prefix_of(init_st), /*strict=*/true);
    } catch (const Error& e) {
      throw Fatal{std::string("--init: ") + e.what(), 1};
    }
    run.log("backbone initialised from " + o.init + "; heads start fresh");
  }
  model.to(device);
  model.train();
  models::StepSettings ss;
  ss.lr = o.lr;
  ss.clip = o.clip;
  ss.log_every = o.log_every;
  ss.precision = parse_precision(o.precision);
  ss.graph = o.cuda_graph;
  if (o.cuda_graph && ranks > 1)
    throw Fatal{"--cuda-graph: a captured step cannot include the gradient all-reduce (MPI runs on the host); "
                "run with one process or without --cuda-graph", 2};
  // Data parallelism: gradients averaged in the step's hook; --sync-bn, --gather-negatives (docs/scaling.md).
  std::unique_ptr<MpiReducer> reducer = ranks > 1 ? std::make_unique<MpiReducer>(comm) : nullptr;
  std::optional<dist::SyncBatchNormScope> sync_bn;
  if (ranks > 1 && o.sync_bn) sync_bn.emplace(comm);
  if (ranks > 1 && o.gather_negatives)
    model.set_negatives_gather([&comm](const Variable& x) { return dist::all_gather_rows(x, comm); });
  models::PretrainStep step_fn(model, ss, reducer.get());
  if (o.cuda_graph)
    run.log("--cuda-graph: the step is captured after " + std::to_string(ss.graph_warmup) +
            " eager steps and replayed from then on (" + (device.is_cpu() ? "the CPU recorder" : "a CUDA graph") +
            "); log steps check after the update");
  Adam& adam = step_fn.optimizer();
  const std::vector<Variable>& params = step_fn.parameters();
  int64_t start = 0;
  if (o.resume) {
    meta = models::load_training_checkpoint(ckpt, model, adam);
    start = meta.step;
    run.log("resumed at step " + std::to_string(start) + " from " + ckpt);
    if (saved_ranks != ranks)
      run.log("note: the checkpoint was written by a run of " + std::to_string(saved_ranks) +
              " rank(s), this session has " + std::to_string(ranks) + ": --batch-pairs " +
              std::to_string(o.batch_pairs) + " is per rank, so the global batch changes from " +
              std::to_string(saved_ranks * o.batch_pairs) + " to " +
              std::to_string(ranks * o.batch_pairs) + " pairs; from step " + std::to_string(start + 1) +
              " on the batches are those of a " + std::to_string(ranks) + "-rank run (docs/scaling.md)");
  }
  if (ranks > 1 && !dist::parameters_identical_across_ranks(comm, params))
    comm.abort("pretrain: error: the ranks start from different parameters (is " + ckpt +
               " the same file on every node?)");

  // Data.
  data::PretrainConfig dc;
  dc.patch = {o.patch[0], o.patch[1], o.patch[2]};
  dc.batch_pairs = o.batch_pairs;
  dc.voxels_per_pair = o.voxels_per_pair;
  dc.aug = o.aug == "local" ? data::PretrainConfig::Aug::Local : o.aug == "vox2vec" ? data::PretrainConfig::Aug::Vox2vec
                                                                                    : data::PretrainConfig::Aug::None;
  dc.vox2vec.ct = modality_used == "ct";
  dc.volumes =
      o.batch_volumes == "one" ? data::PretrainConfig::Volumes::OneVolume : data::PretrainConfig::Volumes::PerPair;
  dc.vox2vec.program_order = o.vox2vec_order == "program";
  dc.local.shuffle_block_min = {o.shuffle_block_min[0], o.shuffle_block_min[1], o.shuffle_block_min[2]};
  if (dc.vox2vec.ct) {
    const data::PreprocessConfig ppc = preprocess_config(o, data::Modality::CT);
    dc.vox2vec.data_window_lo = ppc.ct_clip_lo;
    dc.vox2vec.data_window_hi = ppc.ct_clip_hi;
  }
  dc.seed = o.seed;
  dc.group = comm.rank();  // rank r builds items r*B .. r*B+B-1 of each global batch (dist/rank_streams.h)
  data::PretrainLoader loader(std::move(vols), dc, o.loader_threads, 2);
  loader.seek(o.resume ? meta.sampler_position : 0);
  // Batches reach the device through the uploader (engine/batch_uploader.h), one batch ahead of the step:
  // on a GPU batch k+1 is copied from pinned memory on a copy stream while step k runs, with no host sync;
  // on the CPU it is a plain copy.
  std::unique_ptr<BatchUploader> uploader = make_batch_uploader(device);
  auto upload_next = [&] {
    data::PretrainBatch b = loader.next();
    uploader->put({b.view_a, b.view_b, b.target_a, b.target_b, b.coords_a, b.coords_b});
  };

  json cfg = table.to_json();
  cfg["model"] = json::parse(mc.to_json());
  cfg["modality_used"] = modality_used;
  cfg["preprocessing"] = preprocess_config(o, modality_used == "mri" ? data::Modality::MRI : data::Modality::CT).key();
  cfg["parameters"] = model.parameter_count();
  cfg["trainable_parameters"] = [&] { int64_t n = 0; for (auto& p : params) n += p.value().numel(); return n; }();
  cfg["threads"] = threads;
  cfg["ranks"] = ranks;
  cfg["batch_pairs_per_rank"] = o.batch_pairs;
  cfg["batch_pairs_global"] = int64_t(ranks) * o.batch_pairs;
  if (ranks > 1) cfg["batchnorm_running_stats"] = o.sync_bn ? "global (--sync-bn)" : "rank 0's (not broadcast)";
  if (root) run.write_json("config.json", cfg);
  run.log("model " + mc.arch + ": base " + std::to_string(mc.base) + ", " + std::to_string(mc.scales) +
          " scales, d = " + std::to_string(mc.voxel_dim()) + ", " + fmt("%.4g", double(model.parameter_count()) / 1e6) +
          " M parameters; " + "batch " + std::to_string(o.batch_pairs) + " pairs of " + std::to_string(o.patch[0]) +
          "x" + std::to_string(o.patch[1]) + "x" + std::to_string(o.patch[2]) + ", " +
          std::to_string(o.voxels_per_pair) + " voxels each; " + std::to_string(o.steps) + " steps on " + device.str() +
          " with " + std::to_string(threads) + " threads");
  if (ranks > 1)
    run.log("data parallel: " + std::to_string(ranks) + " ranks (" + comm.backend_name() + "), global batch " +
            std::to_string(ranks * o.batch_pairs) + " pairs, BatchNorm " + (o.sync_bn ? "synchronized" : "per rank") +
            ", negatives " + (o.gather_negatives ? "gathered from every rank" : "per rank") + ", " +
            std::to_string(threads) + " threads per rank");

  const std::vector<std::string> columns{"step", "time_s", "lr", "Lc", "Lr", "L", "grad_norm", "steps_per_s",
                                         "probe_dice"};  // probe_dice: nan on steps without a probe
  std::optional<app::MetricsCsv> metrics;
  if (root) metrics.emplace(run.path("metrics.csv"), columns, start);

  auto metadata_for = [&](int64_t step) {
    models::TrainingMeta m;
    m.step = step;
    // The batch in the uploader (put, not yet taken) belongs to the next step: resume starts with it.
    m.sampler_position = loader.position() - (uploader->pending() ? 1 : 0);
    m.model_json = mc.to_json();
    m.data_json = table.to_json().dump();
    const RngState& s = init_rng.state();
    m.rng_json = json{{"model_init", {{"seed", s.seed}, {"stream", s.stream}, {"counter", s.counter}}},
                      {"loader", {{"seed", dc.seed}, {"ranks", ranks},
                                  {"rule", "pair b of rank r's batch k: Rng(seed).split(k).split(r * B + b)"}}}}.dump();
    m.extra["preprocessing"] = cfg["preprocessing"];
    m.extra["program"] = "hdssl pretrain";
    m.extra["ranks"] = std::to_string(ranks);
    return m;
  };
  auto plot = [&] {
    std::vector<std::string> cols;
    std::vector<std::vector<double>> rows;
    app::MetricsCsv::read(run.path("metrics.csv"), cols, rows);
    app::Series lc{"Lc", {}, {}}, lr{"lambda x Lr", {}, {}}, l{"L", {}, {}}, pd{"probe Dice", {}, {}};
    pd.right_axis = true;
    for (auto& r : rows) {
      if (r.size() > 8 && std::isfinite(r[8])) pd.x.push_back(r[0]), pd.y.push_back(r[8]);
      lc.x.push_back(r[0]); lc.y.push_back(r[3]);
      lr.x.push_back(r[0]); lr.y.push_back(o.lambda * r[4]);
      l.x.push_back(r[0]); l.y.push_back(r[5]);
    }
    std::vector<app::Series> s{l, lc};
    if (mc.restoration) s.push_back(lr);
    if (!pd.x.empty()) s.push_back(pd);
    const int smooth = rows.size() >= 40 ? int(rows.size() / 20) : 0;
    app::plot_curves(run.path("progress.png"), "pretraining loss", "step", s, false, smooth);
  };
  auto save = [&](int64_t step) {
    if (ranks > 1) {  // collective: every rank checks, rank 0 writes
      const bool same = dist::parameters_identical_across_ranks(comm, params);
      if (!same)
        comm.abort("pretrain: error: step " + std::to_string(step) + ": the parameters differ between the ranks; not "
                   "saving (the last checkpoint in " + o.out + " is intact)", 5);
      run.log_file_only("step " + std::to_string(step) + ": parameters identical on all " + std::to_string(ranks) +
                        " ranks (hash " + std::to_string(dist::parameters_hash(params)) + ")");
      if (!root) return;
    }
    const std::string latest = run.path("checkpoint_latest.safetensors");
    if (fs::exists(latest)) fs::rename(latest, run.path("checkpoint_previous.safetensors"));
    models::save_training_checkpoint(latest, model, adam, metadata_for(step));
    plot();
  };

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  app::Progress progress(start, o.steps, 2.0);
  const auto t0 = std::chrono::steady_clock::now();
  if (start < o.steps) upload_next();
  for (int64_t step = start + 1; step <= o.steps; ++step) {
    models::PretrainInputs in = models::inputs_from_tensors(uploader->take());  // batch step - 1
    if (step < o.steps) upload_next();  // the next batch: its copy overlaps this step
    if (step == o.debug_nan_at) in.view_a = Tensor::full(in.view_a.shape(), NAN, DType::F32, device);
    // A log step reads the loss terms and the gradient norm to the host and checks them (before Adam);
    // the other steps read nothing (no host sync), so a NaN there is seen at the next log step, up to
    // --log-every - 1 steps later. Every step that saves a checkpoint is a log step.
    const bool saves = step % o.save_every == 0 || step == o.steps;
    // Every rank takes the same steps as log steps (they reduce the loss terms there); the probe runs on rank 0.
    const bool probe_step = !o.probe_data.empty() && step % o.probe_every == 0;  // eval/online_probe.h
    models::StepResult r;
    auto diverged = [&](const std::string& what) {
      return Fatal{what + "; stopping without saving. The last checkpoint in " + o.out +
                       " is intact: continue with --resume, perhaps with a smaller --lr.", 4};
    };
    try {
      // A probe step is a log step too, so that its metrics row (with probe_dice) is written.
      r = step_fn.run(in, step, /*check=*/saves || probe_step || g_signal != 0);
    } catch (const models::StepDiverged& e) {
      throw diverged(e.what());
    }
    bool stop = g_signal != 0;
    if (ranks > 1) {  // a signal to any rank stops every rank after this step (one value, every step)
      double any = stop ? 1.0 : 0.0;
      comm.allreduce_sum(&any, 1, DType::F64);
      stop = any > 0;
    }
    if (stop && !r.checked) {  // the signal came during an unchecked step: check it now, before saving
      if (!std::isfinite(r.l()) || !std::isfinite(r.grad_sum_squares.get()))
        throw diverged("step " + std::to_string(step) + ": the loss (L = " + fmt("%g", r.l()) +
                       ") or the gradient norm is not finite");
      r.grad_norm = std::sqrt(r.grad_sum_squares.get());
      r.checked = true;
    }
    if (!r.checked) continue;  // no metrics row, no progress line, no checkpoint (not a log step)
    double lc = r.lc(), lr = r.lr(), l = r.l();
    const double gn = r.grad_norm;
    if (ranks > 1) {  // metrics.csv holds the means over the ranks (the gradient norm is the same on every rank)
      double v[3] = {lc, lr, l};
      comm.allreduce_sum(v, 3, DType::F64);
      lc = v[0] / ranks, lr = v[1] / ranks, l = v[2] / ranks;
    }

    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::vector<std::pair<std::string, double>> terms{{"Lc", lc}};
    if (mc.restoration) terms.push_back({"Lr", lr});
    terms.push_back({"L", l});
    terms.push_back({"|g|", gn});
    if (root) {
      std::string line = progress.update(step, terms);
      // The online probe (eval/online_probe.h) reads a copy of the backbone: the pretraining is unchanged.
      const double probe_dice = probe && probe_step ? probe->run(model.backbone(), device) : NAN;
      if (std::isfinite(probe_dice))
        run.log("step " + std::to_string(step) + ": probe Dice " + fmt("%.4f", probe_dice));
      metrics->row({double(step), elapsed, adam.lr(), lc, lr, l, gn, progress.steps_per_second(), probe_dice});
      if (!line.empty()) run.log_file_only(line);
    }
    if (saves || stop) {
      try {
        save(step);
      } catch (const Error& e) {
        throw Fatal{std::string("step ") + std::to_string(step) + ": " + e.what(), 4};
      }
    }
    if (stop) {
      if (root) progress.finish();
      const std::string by = g_signal ? "signal " + std::to_string(int(g_signal)) : "a signal to another rank";
      run.log("interrupted by " + by + " after step " + std::to_string(step) +
              "; checkpoint saved. Continue with: pretrain --resume " + o.out);
      return 130;
    }
  }
  if (root) progress.finish();
  if (root && start < o.steps) {
    fs::copy_file(run.path("checkpoint_latest.safetensors"), run.path("checkpoint_final.safetensors"),
                  fs::copy_options::overwrite_existing);
    std::map<std::string, std::string> bm{{"preprocessing", cfg["preprocessing"]}, {"step", std::to_string(o.steps)},
                                          {"pretraining", mc.to_json()}};
    models::save_backbone(run.path("backbone.safetensors"), model, bm);
  }
  run.log("done: " + std::to_string(o.steps) + " steps. Backbone: " + run.path("backbone.safetensors") +
          " (PyTorch FPN3d names); progress plot: " + run.path("progress.png"));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // OpenMP threads that spin while they wait make a step up to 10x slower when the cores are shared (with
  // the loader's threads, or other programs). libgomp reads OMP_WAIT_POLICY when it loads, before main(),
  // so when it is unset, set PASSIVE and restart this program once (same pid, same arguments).
  if (!std::getenv("OMP_WAIT_POLICY")) {
    ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    ::execv("/proc/self/exe", argv);  // returns only on failure: then go on as we are
  }
  Options o;
  CLI::App app{"hdssl pretrain: dense self-supervised pretraining of a 3D FPN on NIfTI volumes (Kats et al. 2024).\n"
               "Defaults are the paper's. Ablation rows as flags: see docs/ablation.md."};
  app::SettingsTable table(app);  // also: a repeated flag, the last wins
  declare_settings(table, o);
  app::ResumeFlag resume(app, "continue the run RUN (or the one in -o) from its last intact checkpoint");
  app.add_flag("--demo", o.demo, "synthesize CT phantoms if absent and pretrain a small model on the CPU (minutes)");
  app.add_option("--debug-nan-at", o.debug_nan_at, "testing: poison the input of this step with NaN")->group("");
  if (int rc = app::parse_command_line(app, argc, argv); rc >= 0) return rc;
  try {
    table.check_ranges();
    check_combinations(o);
    o.resume = resume.apply(&o.out, table.given("-o,--out"));
  } catch (const app::UsageError& e) {
    std::cerr << "pretrain: error: " << e.what() << std::endl;
    return 2;
  }
  // One process per rank under mpirun / srun (MPI is initialized only then); a plain run is a single rank.
  std::unique_ptr<dist::Communicator> comm;
  try {
    comm = dist::make_communicator();
  } catch (const std::exception& e) {
    std::cerr << "pretrain: error: " << e.what() << std::endl;
    return 2;
  }
  // An error on one rank of several ends the whole job (the others would wait for it forever).
  auto fail = [&](const std::string& m, int code) {
    if (comm->size() > 1) comm->abort("pretrain: error: " + m, code);
    std::cerr << "pretrain: error: " << m << std::endl;
    return code;
  };
  try {
    return run_pretraining(o, table, app, *comm);
  } catch (const Fatal& f) {
    return fail(f.message, f.code);
  } catch (const std::bad_alloc&) {
    return fail("out of host memory (try a smaller --batch-pairs, --patch or --voxels-per-pair)", 3);
  } catch (const std::exception& e) {
    std::string m = e.what();
    const bool oom = m.find("out of memory") != std::string::npos || m.find("out of host memory") != std::string::npos;
    return fail(m + (oom ? " (try a smaller --batch-pairs, --patch or --voxels-per-pair)" : ""), oom ? 3 : 1);
  }
}
