// The online probe: cases preprocessed once, then per call a linear head over a copy of the backbone.
#include "eval/online_probe.h"

#include "engine/check.h"
#include "eval/patches.h"
#include "eval/selection.h"
#include "eval/trainer.h"
#include "models/checkpoint.h"
#include "models/segmentation.h"

namespace hdssl::eval {

OnlineProbe::OnlineProbe(const std::string& dataset_dir, const data::PreprocessConfig& pc, const OnlineProbeConfig& cfg,
                         const std::string& cache)
    : cfg_(cfg), ds_(data::read_labeled_dataset(dataset_dir)) {
  const size_t need = size_t(cfg.train_cases + cfg.val_cases);
  if (cfg.train_cases < 1 || cfg.val_cases < 1 || ds_.cases.size() < need)
    throw data::DataError(dataset_dir + ": the online probe needs " + std::to_string(cfg.train_cases) + " training + " +
                          std::to_string(cfg.val_cases) + " validation cases, the dataset has " +
                          std::to_string(ds_.cases.size()));
  if (classes() < 1) throw data::DataError(dataset_dir + ": dataset.json declares no foreground label");
  for (size_t i = 0; i < need; ++i) {  // cases are sorted by id: the first train, the next validate
    const bool train = i < size_t(cfg.train_cases);
    (train ? train_ids_ : val_ids_).push_back(ds_.cases[i].id);
    (train ? train_ : val_).push_back(data::load_labeled_case(ds_, i, pc, cache));
  }
}

double OnlineProbe::run(const models::FPN3d& backbone, Device device) const {
  // A Segmenter of its own, built on the CPU from its own stream (the same head init every probe), with
  // the backbone's parameters and BatchNorm statistics copied in: the pretraining's model is only read.
  Rng rng(cfg_.seed, /*stream=*/0x0b5e);
  models::SegmenterConfig sc{backbone.config(), classes(), models::HeadKind::Linear};
  models::Segmenter seg(sc, rng);
  models::SafeTensors st;
  models::add_module_state(st, backbone);
  models::load_module_state(seg.backbone(), st, "", /*strict=*/true);
  seg.to(device);

  TrainConfig tc;
  tc.mode = Mode::Linear;  // frozen backbone, eval-mode BatchNorm, no backbone gradient (eval/trainer.h)
  tc.steps = cfg_.steps;
  tc.batch = cfg_.batch;
  tc.lr = cfg_.lr;
  Trainer trainer(seg, tc, device);
  std::vector<const data::Volume*> imgs, lbls;
  for (const auto& c : train_) {
    imgs.push_back(&c.image.image);
    lbls.push_back(&c.labels);
  }
  PatchSamplerConfig pc;
  pc.patch = cfg_.patch;
  pc.classes = classes();
  pc.fg_prob = cfg_.fg_prob;
  pc.seed = cfg_.seed * 1000 + 0x0b5e;
  PatchSampler sampler(imgs, lbls, pc);
  for (int64_t t = 0; t < cfg_.steps; ++t) trainer.step(sampler.batch(uint64_t(t), cfg_.batch), t);

  std::vector<const data::PreprocessedCase*> val;
  for (const auto& c : val_) val.push_back(&c);
  return validation_dice(seg, val, cfg_.patch, classes(), cfg_.window_batch, device);
}

}  // namespace hdssl::eval
