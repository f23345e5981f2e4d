// ./evaluate: downstream evaluation of a backbone on a labeled dataset (docs/method.md section 6), with
// k-fold cross-validation and the paper's tables.
//
//   ./evaluate --mode linear   --data DATASET -o RUN --weights backbone.safetensors
//   ./evaluate --mode finetune --data DATASET -o RUN --weights ... --train-cases 4
//   ./evaluate --mode scratch  --data DATASET -o RUN --train-cases 4
//   ./evaluate --resume RUN                            continues a run with its own settings
//   ./evaluate --table RUN_A RUN_B ... -o TABLE        one table (TABLE.md, TABLE.csv) over several runs
//
// DATASET is an nnU-Net v2 raw folder or a Medical Segmentation Decathlon task. RUN gets config.json,
// log.txt, splits_final.json, and per fold fold_I/ with metrics.csv, progress.png,
// checkpoint_latest.safetensors, checkpoint_final.safetensors, checkpoint_best.safetensors (model
// selection: the best validation Dice, the model that is tested) and summary.json (Dice per class per
// test case, on the preprocessed grid); when every fold is done, cv_table.md / cv_table.csv.
// The machinery lives in eval/ and models/segmentation.h; this file is flags and the loop. Every setting
// is declared once in declare_settings() (apps/common/settings.h); exit codes: apps/README.md.

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <new>
#include <optional>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "apps/common/ct_window_setting.h"
#include "apps/common/device_setup.h"
#include "apps/common/plot.h"
#include "apps/common/progress.h"
#include "apps/common/run_folder.h"
#include "apps/common/settings.h"
#include "autograd/autocast.h"
#include "data/dataset.h"
#include "data/preprocess_compat.h"
#include "engine/backend.h"
#include "models/checkpoint.h"
#include "eval/dice.h"
#include "eval/folds.h"
#include "eval/inference.h"
#include "eval/report.h"
#include "eval/selection.h"
#include "eval/sliding_window.h"
#include "eval/trainer.h"

using namespace hdssl;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct Fatal {
  std::string message;
  int code = 1;
};

std::atomic<int> g_signal{0};
extern "C" void on_signal(int s) { g_signal = s; }

// Every setting of a run. Declared (flag, JSON key, range, help, kind) in declare_settings() only.
struct Options {
  std::string mode, data, out, weights, splits, name, device = app::kDefaultDevice, cache;
  std::string finetune_head = "nonlinear", frozen_bn = "train", ct_window = "program";  // issue 11 (b), (d), (g)
  double val_fraction = 0.2;                                                             // issue 11 (c)
  int64_t val_every = 1000;
  std::vector<std::string> table;
  int64_t steps = 45000, freeze_steps = 15000, warmup_steps = 1200, save_every = 1000;
  int batch = 7, folds = 5, fold = -1, train_cases = 0, base = 32, scales = 5, blocks = 2, threads = 0,
      window_batch = 2;
  std::vector<int64_t> patch{128, 128, 32};
  std::vector<double> spacing;
  double lr = 3e-4, backbone_lr_start = 3e-5, fg_prob = 0.5;
  uint64_t seed = 0;
  bool resume = false;
  bool allow_preprocess_mismatch = false;  // issue 15 (3)
  std::string precision = "fp32";          // issue 10 (6): mixed precision (docs/mixed-precision.md)
};

// The one declaration of every setting. The saved ones (Defines, Resumable) are config.json's
// "experiment"; a resumed run keeps them (app::Kind).
void declare_settings(app::SettingsTable& t, Options& o) {
  using K = app::Kind;
  t.add("--mode", "mode", o.mode,
        "linear | nonlinear | finetune | scratch (aliases: probing, fine_tuning, from_scratch)", K::Defines);
  t.add("--data", "data", o.data,
        "labeled dataset: nnU-Net v2 raw folder (dataset.json, imagesTr, labelsTr) or MSD task", K::Resumable);
  t.add("-o,--out", "out", o.out, "run folder (with --table: output prefix)", K::NotSaved);
  t.add("--weights", "weights", o.weights,
        "pretrained backbone: backbone.safetensors or a pretraining checkpoint (absent: random init)", K::Defines);
  t.add("--allow-preprocess-mismatch", "allow_preprocess_mismatch", o.allow_preprocess_mismatch,
        "use --weights whose recorded preprocessing (modality, spacing, window) differs from this run's", K::Recorded);
  t.add("--name", "name", o.name, "method name in tables (default: the mode)", K::NotSaved);
  t.add("--steps", "steps", o.steps, "training steps per fold", K::Defines).at_least(1);
  t.add("--batch", "batch", o.batch, "patches per step", K::Defines).at_least(1);
  t.add("--patch", "patch", o.patch, "patch size X Y Z in voxels (also the sliding window)", K::Defines, 3).at_least(1);
  t.add("--lr", "lr", o.lr, "Adam learning rate of the head (and of the backbone in scratch)", K::Defines)
      .above(0)
      .finite();
  t.add("--freeze-steps", "freeze_steps", o.freeze_steps, "finetune: steps with the backbone frozen", K::Defines)
      .at_least(0);
  t.add("--warmup-steps", "warmup_steps", o.warmup_steps, "finetune: steps of the exponential backbone lr warm-up",
        K::Defines).at_least(0);
  t.add("--backbone-lr-start", "backbone_lr_start", o.backbone_lr_start, "finetune: backbone lr when it is unfrozen",
        K::Defines).above(0).finite();
  t.add("--fg-prob", "fg_prob", o.fg_prob, "probability that a patch is centred on a foreground voxel", K::Defines)
      .at_least(0).at_most(1);
  t.add("--folds", "folds", o.folds, "k of the seeded k-fold split", K::Defines).at_least(2);
  t.add("--splits", "splits", o.splits, "nnU-Net splits_final.json instead of --folds", K::Defines);
  t.add("--fold", "fold", o.fold, "run only this fold (0-based; default: every fold)", K::NotSaved).at_least(0);
  t.add("--train-cases", "train_cases", o.train_cases,
        "few-label runs: use N of each fold's training cases (seeded; 0: all)", K::Defines)
      .at_least(0);
  t.add("--base-channels", "base", o.base, "FPN3d base channels without --weights", K::Defines).at_least(1);
  t.add("--scales", "scales", o.scales, "FPN3d levels without --weights", K::Defines).at_least(1);
  t.add("--blocks", "blocks", o.blocks, "ResBlocks per level without --weights", K::Defines).at_least(1);
  t.add("--spacing", "spacing", o.spacing, "resample to X Y Z mm (default: CT 1 1 2, MRI 1.5 1.5 1.5)", K::Defines, 3)
      .above(0).finite();
  // The published program's protocol (docs/method.md section 9, (b) (c) (d) (g)); legacy(): what a run
  // saved before these settings existed did, kept on --resume.
  t.add("--finetune-head", "finetune_head", o.finetune_head,
        "finetune/scratch head: nonlinear (the paper) | linear (the published program)", K::Defines)
      .one_of({"linear", "nonlinear"}).legacy("nonlinear");
  t.add("--frozen-bn", "frozen_bn", o.frozen_bn,
        "finetune, frozen phase: train (batch statistics, the published program) | eval (pretraining running "
        "statistics)",
        K::Defines)
      .one_of({"train", "eval"})
      .legacy("eval");
  app::add_ct_window(t, o.ct_window);
  t.add("--val-fraction", "val_fraction", o.val_fraction,
        "model selection: share of each fold's training cases that validate (0: test the last step)", K::Defines)
      .at_least(0).below(1).legacy(0.0);
  t.add("--val-every", "val_every", o.val_every,
        "model selection: steps between validations; the best is tested (0: test the last step)", K::Defines)
      .at_least(0).legacy(0);
  t.add("--cache", "cache", o.cache, "folder for cached preprocessed volumes", K::NotSaved);
  t.add("--window-batch", "window_batch", o.window_batch, "sliding windows per forward at validation", K::NotSaved)
      .at_least(1);
  t.add("--save-every", "save_every", o.save_every, "steps between checkpoints", K::NotSaved).at_least(1);
  t.add("--device", "device", o.device, "cpu | cuda | cuda:N | auto (the first GPU when there is one, else cpu)",
        K::NotSaved);
  t.add("--threads", "threads", o.threads, "CPU threads for the math (0: all cores)", K::NotSaved).at_least(0);
  t.add("--precision", "precision", o.precision,
        "fp32 | bf16 (training and inference: convolutions in bfloat16, losses and weights in float32)", K::Defines)
      .one_of({"fp32", "bf16"});
  t.add("--seed", "seed", o.seed, "seed of folds, initialization and patch sampling", K::Defines);
  t.add("--table", "table", o.table, "no training: one table over these run folders, written to -o PREFIX.md/.csv",
        K::NotSaved);
}

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

Device pick_device(const Options& o) {
  try {
    return app::open_device(o.device);
  } catch (const Error& e) {  // an unknown name or an unusable GPU: both are the command line's fault here
    throw Fatal{e.what(), 2};
  }
}

// The fold summaries of a run folder, by fold number.
std::vector<eval::FoldSummary> read_fold_summaries(const std::string& run) {
  std::vector<eval::FoldSummary> out;
  if (!fs::is_directory(run)) return out;
  for (const auto& e : fs::directory_iterator(run))
    if (e.is_directory() && e.path().filename().string().rfind("fold_", 0) == 0 &&
        fs::exists(e.path() / "summary.json"))
      out.push_back(eval::read_summary((e.path() / "summary.json").string()));
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.fold < b.fold; });
  return out;
}

std::string method_name(const std::string& run) {
  try {
    std::ifstream in(run + "/config.json");
    json j;
    in >> j;
    if (j.contains("name") && !j["name"].get<std::string>().empty()) return j["name"];
  } catch (...) {
  }
  return fs::path(run).filename().string();
}

int make_table(const Options& o) {
  if (o.out.empty()) throw Fatal{"--table needs -o PREFIX (writes PREFIX.md and PREFIX.csv)", 2};
  std::vector<eval::TableRow> rows;
  for (const std::string& r : o.table) {
    std::vector<eval::FoldSummary> f = read_fold_summaries(r);
    if (f.empty()) throw Fatal{r + ": no fold_*/summary.json (has ./evaluate finished a fold there?)"};
    rows.push_back({method_name(r), f});
  }
  const std::string md = eval::table_markdown(rows, false);
  app::write_file_atomic(o.out + ".md", md);
  app::write_file_atomic(o.out + ".csv", eval::table_csv(rows, false));
  std::cout << md << "\nDice in percent; organ cells: mean over folds; Overall: mean ± std over folds.\n"
            << "Written: " << o.out << ".md, " << o.out << ".csv\n";
  return 0;
}

struct Dataset {
  data::LabeledDataset ds;
  std::vector<std::string> labels;  // names of classes 1..K
  std::vector<data::PreprocessedCase> cases;
  std::map<std::string, size_t> index;
};

Dataset load_dataset(const Options& o, const data::PreprocessConfig& pc, const std::vector<std::string>& needed,
                     app::RunFolder& run) {
  Dataset d;
  d.ds = data::read_labeled_dataset(o.data);
  for (size_t k = 1; k < d.ds.label_names.size(); ++k)
    d.labels.push_back(d.ds.label_names[k].empty() ? "label_" + std::to_string(k) : d.ds.label_names[k]);
  for (size_t i = 0; i < d.ds.cases.size(); ++i) {
    if (std::find(needed.begin(), needed.end(), d.ds.cases[i].id) == needed.end()) continue;
    d.cases.push_back(data::load_labeled_case(d.ds, i, pc, o.cache));
    d.index[d.ds.cases[i].id] = d.cases.size() - 1;
  }
  run.log("loaded " + std::to_string(d.cases.size()) + " cases of " + o.data + " (" + d.ds.layout + ", " +
          std::to_string(d.labels.size()) + " classes)");
  return d;
}

// Loads the pretrained backbone into the segmenter's FPN3d (strict by name).
void load_backbone(models::Segmenter& m, const std::string& path, app::RunFolder& run) {
  models::SafeTensors st = models::read_safetensors(path);
  const std::string prefix = models::backbone_prefix_of(st);
  models::load_module_state(m.backbone(), st, prefix, true);
  run.log("backbone weights: " + path + (prefix.empty() ? "" : " (prefix " + prefix + ")"));
}

// Refuses (exit 2) weights that record another preprocessing than this run's (data/preprocess_compat.h),
// unless --allow-preprocess-mismatch; weights that record none are used with a note.
void check_weights_preprocessing(const Options& o, const models::SafeTensors& st, const data::PreprocessConfig& pc,
                                 app::RunFolder& run) {
  const std::string what = "--weights " + o.weights;
  std::optional<data::PreprocessConfig> expected;
  try {
    expected = data::expected_preprocessing(st.metadata, what);
  } catch (const data::DataError& e) {
    throw Fatal{e.what(), 1};
  }
  if (!expected) {
    run.log(what + " records no preprocessing: not checked");
    return;
  }
  const std::string why = data::preprocess_mismatch_message(what, *expected, pc, "--allow-preprocess-mismatch");
  if (why.empty()) return;
  if (!o.allow_preprocess_mismatch) throw Fatal{why, 2};
  run.log("warning (--allow-preprocess-mismatch): " + data::preprocess_differences(*expected, pc));
}

void plot_progress(const std::string& dir) {
  std::vector<std::string> cols;
  std::vector<std::vector<double>> rows;
  app::MetricsCsv::read(dir + "/metrics.csv", cols, rows);
  if (rows.empty()) return;
  std::vector<app::Series> s(3);
  const char* names[3] = {"loss", "BCE", "1 - soft Dice"};
  for (int i = 0; i < 3; ++i) {
    s[size_t(i)].name = names[i];
    for (const auto& r : rows) {
      s[size_t(i)].x.push_back(r[0]);
      s[size_t(i)].y.push_back(r[size_t(i + 1)]);
    }
  }
  app::plot_curves(dir + "/progress.png", "downstream training", "step", s);
}

// Trains and validates one fold; returns false when interrupted by a signal.
bool run_fold(const Options& o, int fi, const eval::Fold& fold, Dataset& d, const eval::SegmenterMeta& meta,
              Device device, app::RunFolder& run) {
  const std::string dir = run.path("fold_" + std::to_string(fi));
  fs::create_directories(dir);
  if (fs::exists(dir + "/summary.json")) {
    run.log("fold " + std::to_string(fi) + ": already done (summary.json), skipped");
    return true;
  }
  const eval::SelectionConfig sel{o.val_fraction, o.val_every};
  const eval::TrainValSplit split = eval::selection_split(fold.train, o.train_cases, sel, o.seed + uint64_t(fi));
  const std::vector<std::string>& train = split.train;
  std::string tl, vl;
  for (const auto& c : train) tl += (tl.empty() ? "" : " ") + c;
  for (const auto& c : split.val) vl += (vl.empty() ? "" : " ") + c;
  run.log("fold " + std::to_string(fi) + ": " + std::to_string(train.size()) + " training cases (" + tl + "), " +
          (sel.enabled() ? "model selection on " + vl + " every " + std::to_string(o.val_every) + " steps, "
                         : std::string()) +
          std::to_string(fold.val.size()) + " test cases");

  Rng rng(o.seed, 1000 + uint64_t(fi));
  models::Segmenter model(meta.model, rng);
  if (!o.weights.empty()) load_backbone(model, o.weights, run);
  model.to(device);

  eval::TrainConfig tc;
  tc.mode = eval::parse_mode(o.mode);
  tc.steps = o.steps;
  tc.batch = o.batch;
  tc.lr = o.lr;
  tc.freeze_steps = o.freeze_steps;
  tc.warmup_steps = o.warmup_steps;
  tc.backbone_lr_start = o.backbone_lr_start;
  tc.frozen_bn_training = o.frozen_bn == "train";
  eval::Trainer trainer(model, tc, device);
  std::vector<const data::PreprocessedCase*> val_cases;
  for (const auto& c : split.val) val_cases.push_back(&d.cases[d.index.at(c)]);
  eval::BestCheckpoint best(dir + "/checkpoint_best.safetensors");

  std::vector<const data::Volume*> imgs, lbls;
  for (const auto& c : train) {
    imgs.push_back(&d.cases[d.index.at(c)].image.image);
    lbls.push_back(&d.cases[d.index.at(c)].labels);
  }
  eval::PatchSamplerConfig pc;
  pc.patch = meta.patch;
  pc.classes = meta.model.classes;
  pc.fg_prob = o.fg_prob;
  pc.seed = o.seed * 1000 + uint64_t(fi);
  eval::PatchSampler sampler(imgs, lbls, pc);

  std::map<std::string, std::string> ckmeta = {{"hdssl.segmenter", eval::meta_to_json(meta).dump()},
                                               {"hdssl.fold", std::to_string(fi)},
                                               {"hdssl.train", eval::train_config_to_json(tc).dump()},
                                               {"hdssl.selection", eval::selection_config_to_json(sel).dump()}};
  const std::string latest = dir + "/checkpoint_latest.safetensors", final_ckpt = dir + "/checkpoint_final.safetensors";
  int64_t start = 0;
  if (o.resume && fs::exists(final_ckpt)) {
    start = trainer.load(final_ckpt);
  } else if (o.resume && fs::exists(latest)) {
    start = trainer.load(latest);
    run.log("fold " + std::to_string(fi) + ": resuming after step " + std::to_string(start));
  }
  app::MetricsCsv metrics(dir + "/metrics.csv", {"step", "loss", "bce", "dice_loss", "backbone_lr"},
                          start > 0 ? start : -1);
  app::Progress progress(start, o.steps);
  for (int64_t t = start; t < o.steps; ++t) {
    eval::StepResult r = trainer.step(sampler.batch(uint64_t(t), o.batch), t);
    if (!std::isfinite(r.loss))
      throw Fatal{"fold " + std::to_string(fi) + ": loss is " + fmt("%g", r.loss) + " at step " +
                      std::to_string(t + 1) + " (try a smaller --lr)",
                  4};
    metrics.row({double(t + 1), r.loss, r.bce, r.dice, r.backbone_lr});
    const std::string line = progress.update(t + 1, {{"loss", r.loss}, {"bce", r.bce}, {"dice", r.dice}});
    const bool last = t + 1 == o.steps;
    if (sel.enabled() && ((t + 1) % o.val_every == 0 || last) &&
        (best.history().empty() || best.history().back().first < t + 1)) {
      const double vd = eval::validation_dice(model, val_cases, meta.patch, meta.model.classes, o.window_batch, device);
      const bool better = best.offer(t + 1, vd, trainer, ckmeta);
      run.log_file_only("fold " + std::to_string(fi) + " step " + std::to_string(t + 1) + ": validation Dice " +
                        fmt("%.4f", vd) + (better ? " (best)" : ""));
    }
    if ((t + 1) % o.save_every == 0 || last || g_signal) {
      try {
        trainer.save(last ? final_ckpt : latest, t + 1, ckmeta);
      } catch (const Error& e) {
        throw Fatal{"fold " + std::to_string(fi) + ", step " + std::to_string(t + 1) + ": " + e.what(), 4};
      }
      run.log_file_only("fold " + std::to_string(fi) + " " + line);
      plot_progress(dir);
    }
    if (g_signal && !last) {
      progress.finish();
      run.log("interrupted after step " + std::to_string(t + 1) + "; continue with --resume");
      return false;
    }
  }
  progress.finish();
  if (start >= o.steps && !fs::exists(final_ckpt)) trainer.save(final_ckpt, o.steps, ckmeta);
  if (fs::exists(latest)) fs::remove(latest);

  // Validation: sliding window over each whole (preprocessed) volume, Dice per class.
  eval::FoldSummary summary;
  summary.fold = fi;
  if (sel.enabled()) {
    summary.selection.selected_step = best.restore(trainer);
    summary.selection.last_step = o.steps;
    summary.selection.val_dice = best.best_dice();
    summary.selection.val_cases = split.val;
    summary.selection.train_cases = split.train;
    summary.selection.history = best.history();
    run.log("fold " + std::to_string(fi) + ": testing the checkpoint of step " +
            std::to_string(summary.selection.selected_step) + " (validation Dice " + fmt("%.4f", best.best_dice()) +
            ")");
  }
  summary.labels = meta.labels;
  model.train(false);
  for (const std::string& id : fold.val) {
    const data::PreprocessedCase& c = d.cases[d.index.at(id)];
    Tensor probs = eval::predict_probabilities({&model}, c.image.image, meta.patch, o.window_batch, device);
    data::Volume pred = eval::labels_from_probabilities(probs, c.image.image, 0.5);
    summary.cases.push_back({id, eval::dice_per_class(pred, c.labels, meta.model.classes)});
    double m = 0;
    for (double v : summary.cases.back().dice) m += v;
    run.log("fold " + std::to_string(fi) + " " + id + ": mean Dice " + fmt("%.4f", m / double(meta.model.classes)));
  }
  eval::write_summary(dir + "/summary.json", summary);
  run.log("fold " + std::to_string(fi) + ": overall mean Dice " + fmt("%.4f", summary.overall()) + " -> " + dir +
          "/summary.json");
  return true;
}

eval::Mode parse_mode_flag(const std::string& m) {
  try {
    return eval::parse_mode(m);
  } catch (const Error& e) {
    throw Fatal{std::string("--mode: ") + e.what(), 2};
  }
}

int run_evaluation(Options& o, app::SettingsTable& table) {
  if (o.out.empty()) throw Fatal{"-o RUN (or --resume RUN) is required (or --table RUN...)", 2};
  if (!o.mode.empty()) o.mode = eval::mode_name(parse_mode_flag(o.mode));  // as saved: the canonical name
  if (!o.data.empty()) o.data = fs::absolute(o.data).string();             // as saved: absolute paths
  if (!o.weights.empty()) o.weights = fs::absolute(o.weights).string();
  app::set_math_threads(o.threads);
  const Device device = pick_device(o);

  app::RunFolder run(o.out);
  if (run.exists("config.json")) {
    // The resume rule (app::Kind): the run's own settings win; a different flag is ignored with a note.
    if (!o.resume)
      throw Fatal{o.out + " already holds a run (config.json); use --resume to continue it or another -o", 2};
    std::ifstream in(run.path("config.json"));
    json old;
    in >> old;
    if (!old.contains("experiment")) throw Fatal{run.path("config.json") + ": no \"experiment\" settings to resume"};
    for (const std::string& note : table.resume(old["experiment"])) run.log(note);
  } else if (o.resume) {
    run.log("--resume: " + o.out + " holds no run yet; starting it");
  }
  if (o.mode.empty() || o.data.empty()) throw Fatal{"--mode and --data are required (or --table RUN...)", 2};
  const eval::Mode mode = parse_mode_flag(o.mode);
  if (mode == eval::Mode::Scratch && !o.weights.empty())
    throw Fatal{"--mode scratch trains from a random initialization; drop --weights", 2};
  run.log(app::device_line(o.device, device));
  // Every forward of this run, training and inference, under the precision (autograd/autocast.h).
  const AutocastGuard precision(parse_precision(o.precision));
  if (o.precision != "fp32") run.log("precision: " + o.precision + " (docs/mixed-precision.md)");
  json cfg = table.to_json();

  // Architecture: from the weights when given, else from the flags.
  eval::SegmenterMeta meta;
  meta.mode = o.mode;
  meta.model.head = eval::head_of(mode, models::parse_head_kind(o.finetune_head));
  meta.model.fpn.base = o.base;
  meta.model.fpn.scales = o.scales;
  meta.model.fpn.blocks = o.blocks;
  models::SafeTensors weights_st;
  if (!o.weights.empty()) {
    weights_st = models::read_safetensors(o.weights);
    meta.model.fpn = models::fpn_config_of(weights_st, models::backbone_prefix_of(weights_st));
  }
  meta.patch = {o.patch[0], o.patch[1], o.patch[2]};

  data::LabeledDataset ds = data::read_labeled_dataset(o.data);
  meta.preprocess = ds.modality == data::Modality::CT ? data::PreprocessConfig::ct() : data::PreprocessConfig::mri();
  if (!o.spacing.empty()) meta.preprocess.spacing = {o.spacing[0], o.spacing[1], o.spacing[2]};
  meta.preprocess.set_ct_window(o.ct_window);  // checked in main() (check_ranges)
  meta.preprocess.min_size = meta.patch;
  if (!o.weights.empty()) check_weights_preprocessing(o, weights_st, meta.preprocess, run);

  // Folds.
  std::vector<std::string> ids;
  for (const auto& c : ds.cases) ids.push_back(c.id);
  std::vector<eval::Fold> folds =
      o.splits.empty() ? eval::make_folds(ids, o.folds, o.seed) : eval::read_splits(o.splits, ids);
  eval::write_splits(run.path("splits_final.json"), folds);
  if (o.fold >= int(folds.size()))
    throw Fatal{"--fold " + std::to_string(o.fold) + ": there are " + std::to_string(folds.size()) + " folds", 2};
  std::vector<int> todo;
  for (int i = 0; i < int(folds.size()); ++i)
    if (o.fold < 0 || o.fold == i) todo.push_back(i);
  std::vector<std::string> needed;
  for (int i : todo) {
    needed.insert(needed.end(), folds[size_t(i)].val.begin(), folds[size_t(i)].val.end());
    const eval::TrainValSplit sp = eval::selection_split(folds[size_t(i)].train, o.train_cases,
                                                         {o.val_fraction, o.val_every}, o.seed + uint64_t(i));
    needed.insert(needed.end(), sp.train.begin(), sp.train.end());
    needed.insert(needed.end(), sp.val.begin(), sp.val.end());
  }

  Dataset d = load_dataset(o, meta.preprocess, needed, run);
  meta.labels = d.labels;
  meta.model.classes = int(d.labels.size());
  cfg = {{"program", "hdssl evaluate"}, {"name", o.name.empty() ? o.mode : o.name}, {"experiment", cfg},
         {"device", o.device}, {"model", eval::meta_to_json(meta)}, {"folds_total", folds.size()}};
  run.write_json("config.json", cfg);
  run.log("hdssl evaluate: mode " + o.mode + ", " + models::head_kind_name(meta.model.head) + " head on FPN3d base " +
          std::to_string(meta.model.fpn.base) + " / " + std::to_string(meta.model.fpn.scales) + " scales, " +
          (o.weights.empty() ? std::string("random init") : "weights " + o.weights) + ", " + std::to_string(o.steps) +
          " steps x batch " + std::to_string(o.batch) + " on " + device.str());

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  for (int i : todo)
    if (!run_fold(o, i, folds[size_t(i)], d, meta, device, run)) return 130;

  std::vector<eval::FoldSummary> done = read_fold_summaries(o.out);
  if (!done.empty()) {
    eval::TableRow row{cfg["name"].get<std::string>(), done};
    const std::string md = eval::table_markdown({row}, true);
    app::write_file_atomic(run.path("cv_table.md"), md);
    app::write_file_atomic(run.path("cv_table.csv"), eval::table_csv({row}, true));
    run.log(std::to_string(done.size()) + " of " + std::to_string(folds.size()) + " folds done:\n" + md);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"hdssl evaluate: segmentation on a labeled dataset with a (pretrained) FPN3d backbone, k-fold "
               "cross-validation, Dice per organ (Kats et al. 2024, section 3.2-3.3). Defaults are the paper's."};
  app::SettingsTable table(app);
  declare_settings(table, o);
  app::ResumeFlag resume(app,
                         "continue the run RUN (or the one in -o) with its own settings (finished folds are kept)");
  if (int rc = app::parse_command_line(app, argc, argv); rc >= 0) return rc;
  try {
    table.check_ranges();  // --ct-window's value too
    o.resume = resume.apply(&o.out, table.given("-o,--out"));
  } catch (const app::UsageError& e) {
    std::cerr << "evaluate: error: " << e.what() << std::endl;
    return 2;
  }
  try {
    if (!o.table.empty()) return make_table(o);
    return run_evaluation(o, table);
  } catch (const Fatal& f) {
    std::cerr << "evaluate: error: " << f.message << std::endl;
    return f.code;
  } catch (const data::DataError& e) {
    std::cerr << "evaluate: error: " << e.what() << std::endl;
    return 3;
  } catch (const std::bad_alloc&) {
    std::cerr << "evaluate: error: out of host memory (try a smaller --batch or --patch)" << std::endl;
    return 3;
  } catch (const std::exception& e) {
    std::cerr << "evaluate: error: " << e.what() << std::endl;
    return 1;
  }
}
