// ./pretrain: dense self-supervised pretraining (METHOD.md sections 1-5) on a folder of NIfTI volumes.
//
//   ./pretrain --data DIR -o RUN                 the paper's method ("ours") with the paper's defaults
//   ./pretrain --demo                            synthesizes CT phantoms, pretrains a small model on the CPU
//   ./pretrain -o RUN --resume                   continues a run from its last intact checkpoint
//
// The run folder gets config.json (the effective settings), log.txt, metrics.csv, progress.png,
// checkpoint_latest.safetensors (+ checkpoint_previous.safetensors, the one before) and at the end
// checkpoint_final.safetensors and backbone.safetensors (reference FPN3d names, loads in PyTorch).
// The training step itself lives in models/pretrainer.cpp (see docs/pretraining-step.md).
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <new>
#include <nlohmann/json.hpp>
#include <sstream>

#include <CLI/CLI.hpp>

#include "apps/common/device_setup.h"
#include "apps/common/plot.h"
#include "apps/common/progress.h"
#include "apps/common/run_folder.h"
#include "autograd/optim.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/nifti.h"
#include "data/phantom.h"
#include "data/preprocess.h"
#include "engine/backend.h"
#include "models/train_state.h"

using namespace hdssl;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// Every setting of a run; written to config.json and into each checkpoint.
struct Options {
  std::string data, out, cache, modality = "auto", arch = "ours", aug = "local", device = "auto";
  std::string batch_volumes = "one", ct_window = "program", vox2vec_order = "program";  // issue 11 (a), (d), (f)
  std::vector<int64_t> shuffle_block_min{2, 2, 1};                                    // issue 11 (e)
  int64_t steps = 50000, save_every = 1000;
  int batch_pairs = 10, voxels_per_pair = 1024, base = 0, scales = 0, blocks = 2, threads = 0, loader_threads = 2;
  std::vector<int64_t> patch{128, 128, 32};
  std::vector<double> spacing;  // empty: the modality's preset
  double lr = 3e-4, lambda = 10.0, tau = 0.1, clip = 1.0;
  bool no_restoration = false, restoration_1x1 = false, freeze_projections = false, resume = false, demo = false;
  uint64_t seed = 0;
  int64_t debug_nan_at = -1;  // testing hook: poisons view A of this step

  json to_json() const {
    return {{"data", data}, {"out", out}, {"modality", modality}, {"arch", arch}, {"aug", aug}, {"device", device},
            {"steps", steps}, {"save_every", save_every}, {"batch_pairs", batch_pairs}, {"voxels_per_pair", voxels_per_pair},
            {"base_channels", base}, {"scales", scales}, {"blocks", blocks}, {"patch", patch}, {"spacing", spacing},
            {"lr", lr}, {"lambda", lambda}, {"tau", tau}, {"clip", clip}, {"no_restoration", no_restoration},
            {"restoration_1x1", restoration_1x1}, {"freeze_projections", freeze_projections}, {"seed", seed},
            {"batch_volumes", batch_volumes}, {"ct_window", ct_window}, {"vox2vec_order", vox2vec_order},
            {"shuffle_block_min", shuffle_block_min}};
  }
  void from_json(const json& j) {  // the settings a resumed run keeps
    data = j.at("data"); modality = j.at("modality"); arch = j.at("arch"); aug = j.at("aug");
    batch_pairs = j.at("batch_pairs"); voxels_per_pair = j.at("voxels_per_pair"); base = j.at("base_channels");
    scales = j.at("scales"); blocks = j.at("blocks"); patch = j.at("patch").get<std::vector<int64_t>>();
    spacing = j.at("spacing").get<std::vector<double>>(); lr = j.at("lr"); lambda = j.at("lambda"); tau = j.at("tau");
    clip = j.at("clip"); no_restoration = j.at("no_restoration"); restoration_1x1 = j.at("restoration_1x1");
    freeze_projections = j.at("freeze_projections"); seed = j.at("seed");
    batch_volumes = j.value("batch_volumes", "per-pair"); ct_window = j.value("ct_window", "paper");  // before issue 11: these
    vox2vec_order = j.value("vox2vec_order", "legacy");                                             // were the only behaviour
    shuffle_block_min = j.value("shuffle_block_min", std::vector<int64_t>{1, 1, 1});
  }
};

std::atomic<int> g_signal{0};
extern "C" void on_signal(int s) { g_signal = s; }

// A run stops with one of these: the message is printed, the process exits with the code.
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
  if (!fs::is_directory(dir)) throw Fatal{"--data " + dir + ": not a folder"};
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
  if (files.empty()) throw Fatal{"--data " + o.data + ": no NIfTI files (.nii, .nii.gz, .hdr) found in the folder or below it"};
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
        os << f << ": " << rd[0] << "x" << rd[1] << "x" << rd[2] << " voxels after resampling to " << pc.spacing[0] << "x"
           << pc.spacing[1] << "x" << pc.spacing[2] << " mm, smaller than the patch " << o.patch[0] << "x" << o.patch[1]
           << "x" << o.patch[2];
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
                std::to_string(small) + " smaller than the patch (first: " + first_problem + ")"};
  run.log("using " + std::to_string(vols.size()) + " volume(s) (" + *modality_used + "), skipped " +
          std::to_string(unreadable + small));
  return vols;
}

// The demo: CT phantoms (made once, reused), a small network, a few minutes on two CPU cores.
void apply_demo(Options& o, const CLI::App& app) {
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
  if (!fs::exists(o.data) || find_images(o.data).empty()) {
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

int run_pretraining(Options& o, const CLI::App& app) {
  if (o.demo) apply_demo(o, app);
  if (o.out.empty()) {
    if (o.resume) throw Fatal{"--resume needs the run folder: -o RUN", 2};
    char b[32];
    std::time_t t = std::time(nullptr);
    std::strftime(b, sizeof(b), "%Y%m%d-%H%M%S", std::localtime(&t));
    o.out = "runs/pretrain-" + o.arch + "-" + b;
  }
  std::unique_ptr<app::RunFolder> run_ptr;
  try {
    run_ptr = std::make_unique<app::RunFolder>(o.out);
  } catch (const Error& e) {
    throw Fatal{e.what(), 1};
  }
  app::RunFolder& run = *run_ptr;

  // Resume: the run's own settings win, except the ones that may change between sessions.
  std::string ckpt;
  models::TrainingMeta meta;
  const bool has_checkpoint = run.exists("checkpoint_latest.safetensors") || run.exists("checkpoint_previous.safetensors");
  if (o.resume && !has_checkpoint) {
    run.log("--resume: " + o.out + " holds no checkpoint yet; starting from step 0");
    o.resume = false;
  }
  if (o.resume) {
    ckpt = pick_checkpoint(run);
    if (ckpt.empty()) throw Fatal{"--resume: no intact checkpoint in " + o.out + " (see the refusals above)"};
    models::SafeTensors st = models::read_safetensors(ckpt);
    meta = models::read_training_meta(st, ckpt);
    Options keep = o;
    o.from_json(json::parse(meta.data_json));
    // Flags that define the run cannot change on --resume; say so instead of ignoring them silently.
    const json given = keep.to_json(), kept = o.to_json();
    for (const auto& [flag, key] : std::vector<std::pair<std::string, std::string>>{
             {"--arch", "arch"}, {"--aug", "aug"}, {"--modality", "modality"}, {"--batch-pairs", "batch_pairs"},
             {"--voxels-per-pair", "voxels_per_pair"}, {"--base-channels", "base_channels"}, {"--scales", "scales"},
             {"--blocks", "blocks"}, {"--patch", "patch"}, {"--spacing", "spacing"},
             {"--lambda", "lambda"}, {"--tau", "tau"}, {"--no-restoration", "no_restoration"},
             {"--restoration-1x1", "restoration_1x1"}, {"--freeze-projections", "freeze_projections"}, {"--seed", "seed"},
             {"--batch-volumes", "batch_volumes"}, {"--ct-window", "ct_window"}, {"--vox2vec-order", "vox2vec_order"},
             {"--shuffle-block-min", "shuffle_block_min"}})
      if (app.count(flag) && given.at(key) != kept.at(key))
        run.log("note: " + flag + " " + given.at(key).dump() + " ignored: a resumed run keeps its " + key + " = " +
                kept.at(key).dump());
    if (app.count("--data")) o.data = keep.data;  // the volumes moved
    if (!app.count("--steps")) o.steps = json::parse(meta.data_json).at("steps");  // --steps extends a run
    if (app.count("--lr") && keep.lr != o.lr) {  // e.g. lower after a divergence; Adam's moments are kept
      run.log("note: learning rate changed on resume from " + fmt("%g", o.lr) + " to " + fmt("%g", keep.lr));
      o.lr = keep.lr;
    }
    if (!app.count("--save-every")) o.save_every = json::parse(meta.data_json).at("save_every");
  } else if (has_checkpoint) {
    throw Fatal{"the run folder " + o.out + " already holds a checkpoint: add --resume to continue it, or choose another -o"};
  }
  if (o.data.empty()) throw Fatal{"--data DIR is required (or --demo)", 2};
  if (o.patch.size() != 3 || o.patch[0] < 1 || o.patch[1] < 1 || o.patch[2] < 1) throw Fatal{"--patch needs three positive sizes", 2};

  // Threads and device.
  const int threads = app::set_math_threads(o.threads);
  Device device;
  try {
    device = app::open_device(o.device);
  } catch (const app::BadDeviceName& e) {
    throw Fatal{e.what(), 2};
  } catch (const Error& e) {
    throw Fatal{e.what()};
  }
  o.device = device.str();  // "auto" resolved, as recorded in config.json

  run.log("hdssl pretrain: " + o.out + (o.resume ? " (resuming from " + ckpt + ")" : ""));
  std::string modality_used;
  std::vector<data::PreprocessedVolume> vols = load_volumes(o, run, &modality_used);

  // Model and optimizer.
  models::PretrainConfig mc = model_config(o);
  Rng init_rng(o.seed, /*stream=*/1);
  models::Pretrainer model(mc, init_rng, {DType::F32, Device::cpu()});
  model.to(device);
  model.train();
  std::vector<Variable> params = model.parameters();
  AdamArgs aa;
  aa.lr = o.lr;
  Adam adam(params, aa);
  int64_t start = 0;
  if (o.resume) {
    meta = models::load_training_checkpoint(ckpt, model, adam);
    start = meta.step;
    run.log("resumed at step " + std::to_string(start) + " from " + ckpt);
  }

  // Data.
  data::PretrainConfig dc;
  dc.patch = {o.patch[0], o.patch[1], o.patch[2]};
  dc.batch_pairs = o.batch_pairs;
  dc.voxels_per_pair = o.voxels_per_pair;
  dc.aug = o.aug == "local" ? data::PretrainConfig::Aug::Local : o.aug == "vox2vec" ? data::PretrainConfig::Aug::Vox2vec
                                                                                    : data::PretrainConfig::Aug::None;
  dc.vox2vec.ct = modality_used == "ct";
  dc.volumes = o.batch_volumes == "one" ? data::PretrainConfig::Volumes::OneVolume : data::PretrainConfig::Volumes::PerPair;
  dc.vox2vec.program_order = o.vox2vec_order == "program";
  dc.local.shuffle_block_min = {o.shuffle_block_min[0], o.shuffle_block_min[1], o.shuffle_block_min[2]};
  if (dc.vox2vec.ct) {
    const data::PreprocessConfig ppc = preprocess_config(o, data::Modality::CT);
    dc.vox2vec.data_window_lo = ppc.ct_clip_lo;
    dc.vox2vec.data_window_hi = ppc.ct_clip_hi;
  }
  dc.seed = o.seed;
  data::PretrainLoader loader(std::move(vols), dc, o.loader_threads, 2);
  loader.seek(o.resume ? meta.sampler_position : 0);

  json cfg = o.to_json();
  cfg["model"] = json::parse(mc.to_json());
  cfg["modality_used"] = modality_used;
  cfg["preprocessing"] = preprocess_config(o, modality_used == "mri" ? data::Modality::MRI : data::Modality::CT).key();
  cfg["parameters"] = model.parameter_count();
  cfg["trainable_parameters"] = [&] { int64_t n = 0; for (auto& p : params) n += p.value().numel(); return n; }();
  cfg["threads"] = threads;
  run.write_json("config.json", cfg);
  run.log("model " + mc.arch + ": base " + std::to_string(mc.base) + ", " + std::to_string(mc.scales) + " scales, d = " +
          std::to_string(mc.voxel_dim()) + ", " + fmt("%.4g", double(model.parameter_count()) / 1e6) + " M parameters; " +
          "batch " + std::to_string(o.batch_pairs) + " pairs of " + std::to_string(o.patch[0]) + "x" +
          std::to_string(o.patch[1]) + "x" + std::to_string(o.patch[2]) + ", " + std::to_string(o.voxels_per_pair) +
          " voxels each; " + std::to_string(o.steps) + " steps on " + device.str() + " with " + std::to_string(threads) + " threads");

  const std::vector<std::string> columns{"step", "time_s", "lr", "Lc", "Lr", "L", "grad_norm", "steps_per_s"};
  app::MetricsCsv metrics(run.path("metrics.csv"), columns, start);

  auto metadata_for = [&](int64_t step) {
    models::TrainingMeta m;
    m.step = step;
    m.sampler_position = loader.position();
    m.model_json = mc.to_json();
    m.data_json = o.to_json().dump();
    const RngState& s = init_rng.state();
    m.rng_json = json{{"model_init", {{"seed", s.seed}, {"stream", s.stream}, {"counter", s.counter}}},
                      {"loader", {{"seed", dc.seed}, {"rule", "pair b of batch k uses Rng(seed).split(k).split(b)"}}}}.dump();
    m.extra["preprocessing"] = cfg["preprocessing"];
    m.extra["program"] = "hdssl pretrain";
    return m;
  };
  auto plot = [&] {
    std::vector<std::string> cols;
    std::vector<std::vector<double>> rows;
    app::MetricsCsv::read(run.path("metrics.csv"), cols, rows);
    app::Series lc{"Lc", {}, {}}, lr{"lambda x Lr", {}, {}}, l{"L", {}, {}};
    for (auto& r : rows) {
      lc.x.push_back(r[0]); lc.y.push_back(r[3]);
      lr.x.push_back(r[0]); lr.y.push_back(o.lambda * r[4]);
      l.x.push_back(r[0]); l.y.push_back(r[5]);
    }
    std::vector<app::Series> s{l, lc};
    if (mc.restoration) s.push_back(lr);
    const int smooth = rows.size() >= 40 ? int(rows.size() / 20) : 0;
    app::plot_curves(run.path("progress.png"), "pretraining loss", "step", s, false, smooth);
  };
  auto save = [&](int64_t step) {
    const std::string latest = run.path("checkpoint_latest.safetensors");
    if (fs::exists(latest)) fs::rename(latest, run.path("checkpoint_previous.safetensors"));
    models::save_training_checkpoint(latest, model, adam, metadata_for(step));
    plot();
  };

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  app::Progress progress(start, o.steps, 2.0);
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t step = start + 1; step <= o.steps; ++step) {
    data::PretrainBatch b = loader.next();
    models::PretrainInputs in{b.view_a.to(device), b.view_b.to(device), b.target_a.to(device), b.target_b.to(device),
                              b.coords_a.to(device), b.coords_b.to(device)};
    if (step == o.debug_nan_at) in.view_a = Tensor::full(in.view_a.shape(), NAN, DType::F32, device);
    models::PretrainLoss loss = model.loss(in);
    const double lc = loss.contrastive.value().item();
    const double lr = loss.restoration.defined() ? loss.restoration.value().item() : 0.0;
    const double l = loss.total.value().item();
    if (!std::isfinite(l))
      throw Fatal{"step " + std::to_string(step) + ": the loss is not finite (L = " + fmt("%g", l) + ", Lc = " + fmt("%g", lc) +
                  " [InfoNCE of the embeddings], Lr = " + fmt("%g", lr) + " [restoration MSE]); stopping without saving. " +
                  "The last checkpoint in " + o.out + " is intact: continue with --resume, perhaps with a smaller --lr.", 4};
    loss.total.backward();
    loss = {};
    const double gn = grad_norm(params);
    if (!std::isfinite(gn)) {
      std::string culprit = "?";
      for (auto& [name, v] : model.named_parameters()) {
        if (!v.grad().defined()) continue;
        Tensor s = Tensor::zeros({1}, v.grad().dtype(), v.grad().device());
        backend(v.device()).sum_squares(v.grad(), s);
        if (!std::isfinite(s.item())) { culprit = name; break; }
      }
      throw Fatal{"step " + std::to_string(step) + ": the gradient norm is not finite (first non-finite gradient: " + culprit +
                  "); stopping without saving. The last checkpoint in " + o.out + " is intact: continue with --resume, perhaps with a "
                  "smaller --lr.", 4};
    }
    adam.step(clip_coefficient(gn, o.clip));
    adam.zero_grad();

    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::vector<std::pair<std::string, double>> terms{{"Lc", lc}};
    if (mc.restoration) terms.push_back({"Lr", lr});
    terms.push_back({"L", l});
    terms.push_back({"|g|", gn});
    std::string line = progress.update(step, terms);
    metrics.row({double(step), elapsed, adam.lr(), lc, lr, l, gn, progress.steps_per_second()});
    if (!line.empty()) run.log_file_only(line);
    const bool stop = g_signal != 0;
    if (step % o.save_every == 0 || step == o.steps || stop) {
      try {
        save(step);
      } catch (const Error& e) {
        throw Fatal{std::string("step ") + std::to_string(step) + ": " + e.what(), 4};
      }
    }
    if (stop) {
      progress.finish();
      run.log("interrupted by signal " + std::to_string(int(g_signal)) + " after step " + std::to_string(step) +
              "; checkpoint saved. Continue with: pretrain -o " + o.out + " --resume");
      return 130;
    }
  }
  progress.finish();
  if (start < o.steps) {
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
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // a repeated flag: the last wins
  app.add_option("--data", o.data, "folder searched recursively for NIfTI volumes (labelsTr/ is skipped)");
  app.add_option("-o,--out", o.out, "run folder (default runs/pretrain-ARCH-TIME)");
  app.add_option("--cache", o.cache, "folder for preprocessed volumes, reused by later runs (with --modality ct|mri)");
  app.add_option("--modality", o.modality, "ct | mri | auto (auto: CT when a volume has values below -200)")
      ->check(CLI::IsMember({"ct", "mri", "auto"}))->capture_default_str();
  app.add_option("--steps", o.steps, "optimizer steps in total")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--batch-pairs", o.batch_pairs, "patch pairs per step (B)")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--patch", o.patch, "patch size X Y Z in voxels")->expected(3)->capture_default_str()
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--voxels-per-pair", o.voxels_per_pair, "positive voxel pairs per patch pair (n)")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--lr", o.lr, "Adam learning rate")->capture_default_str();
  app.add_option("--lambda", o.lambda, "weight of the restoration loss Lr")->capture_default_str();
  app.add_option("--tau", o.tau, "InfoNCE temperature")->capture_default_str();
  app.add_option("--arch", o.arch, "ours (balanced FPN, base 32, 5 scales) | vox2vec (base 16, 6 scales, raw concat)")
      ->check(CLI::IsMember({"ours", "vox2vec"}))->capture_default_str();
  app.add_option("--aug", o.aug, "local (shuffle, Bezier, in-painting) | vox2vec (blur/sharpen, noise, window) | none")
      ->check(CLI::IsMember({"local", "vox2vec", "none"}))->capture_default_str();
  app.add_option("--batch-volumes", o.batch_volumes, "one (all pairs of a step from one volume, the published program) | per-pair")
      ->capture_default_str()->check(CLI::IsMember({"one", "per-pair"}));
  app.add_option("--ct-window", o.ct_window, "CT intensity window: paper [-1350,1000] | program [-175,250] | LO,HI (HU)")->capture_default_str();
  app.add_option("--vox2vec-order", o.vox2vec_order, "vox2vec augmentations: program (blur/sharpen, noise in HU, window+clip last) | legacy (window first)")
      ->capture_default_str()->check(CLI::IsMember({"program", "legacy"}));
  app.add_option("--shuffle-block-min", o.shuffle_block_min, "local pixel shuffling: smallest block side X Y Z (block = max(this, patch/20))")
      ->expected(3)->capture_default_str()->check(CLI::PositiveNumber);
  app.add_flag("--no-restoration", o.no_restoration, "train with InfoNCE only (no Lr)");
  app.add_flag("--restoration-1x1", o.restoration_1x1, "restoration head = one 1x1x1 conv (the published program)");
  app.add_flag("--freeze-projections", o.freeze_projections, "keep the per-scale projections at their random init");
  app.add_option("--base-channels", o.base, "channels of pyramid level 0 (default: 32 ours, 16 vox2vec)");
  app.add_option("--scales", o.scales, "pyramid levels (default: 5 ours, 6 vox2vec)");
  app.add_option("--blocks", o.blocks, "ResBlocks per level")->capture_default_str();
  app.add_option("--spacing", o.spacing, "resample to X Y Z mm (default: CT 1 1 2, MRI 1.5 1.5 1.5)")->expected(3)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--device", o.device, "cpu | cuda | cuda:N | auto (the first GPU when there is one, else cpu)")
      ->capture_default_str();
  app.add_option("--threads", o.threads, "CPU threads for the math (default: all cores)");
  app.add_option("--loader-threads", o.loader_threads, "threads preparing batches ahead")->capture_default_str();
  app.add_option("--seed", o.seed, "seed of the initialization and of the data sampling")->capture_default_str();
  app.add_flag("--resume", o.resume, "continue the run in -o from its last intact checkpoint");
  app.add_option("--save-every", o.save_every, "steps between checkpoints")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_flag("--demo", o.demo, "synthesize CT phantoms if absent and pretrain a small model on the CPU (minutes)");
  app.add_option("--debug-nan-at", o.debug_nan_at, "testing: poison the input of this step with NaN")->group("");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // -h prints the help and exits 0; a bad command line exits 2
  }
  try {
    data::PreprocessConfig().set_ct_window(o.ct_window);
  } catch (const std::exception& e) {
    std::cerr << "pretrain: error: --ct-window: " << e.what() << std::endl;
    return 2;
  }
  try {
    return run_pretraining(o, app);
  } catch (const Fatal& f) {
    std::cerr << "pretrain: error: " << f.message << std::endl;
    return f.code;
  } catch (const std::bad_alloc&) {
    std::cerr << "pretrain: error: out of host memory (try a smaller --batch-pairs, --patch or --voxels-per-pair)" << std::endl;
    return 3;
  } catch (const std::exception& e) {
    std::string m = e.what();
    const bool oom = m.find("out of memory") != std::string::npos || m.find("out of host memory") != std::string::npos;
    std::cerr << "pretrain: error: " << m << (oom ? " (try a smaller --batch-pairs, --patch or --voxels-per-pair)" : "") << std::endl;
    return oom ? 3 : 1;
  }
}
