// The online probe of ./pretrain --probe-data (issue 11 item 5, as vox2vec's): every N pretraining steps a
// linear head (models::LinearProbe) is fitted for a few steps on a few labeled cases over a *copy* of the
// current backbone (frozen, eval-mode BatchNorm, no backbone gradient), and its mean Dice on a few other
// cases (sliding window, the rule of eval/selection.h) is reported, so the user watches the representation
// improve while pretraining runs.
//
// It cannot change the pretraining: the backbone's state (parameters and BatchNorm running statistics) is
// copied into a Segmenter of its own, and the probe's random numbers (head initialisation, patch sampling)
// come from its own seeded streams, never from the pretraining's. Every probe starts from the same head
// initialisation and sees the same patches, so two probes differ only by the backbone.
//
// Cost: the cases are read and preprocessed once, in the constructor; a probe is `steps` head steps of
// `batch` patches plus one sliding-window pass over each validation case.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/preprocess.h"
#include "models/fpn3d.h"

namespace hdssl::eval {

struct OnlineProbeConfig {
  int train_cases = 2;   // the first cases of the dataset (sorted by id) train the head
  int val_cases = 1;     // the next ones are held out and give the Dice
  int64_t steps = 50;    // head optimizer steps per probe
  int batch = 2;         // patches per head step
  double lr = 1e-2;      // Adam learning rate of the head (higher than ./evaluate's: few steps)
  double fg_prob = 0.5;  // share of patches centred on foreground (eval/patches.h)
  data::Dims3 patch{128, 128, 32};
  int window_batch = 1;  // sliding windows per forward at validation
  uint64_t seed = 0;
};

class OnlineProbe {
 public:
  // Reads the labeled dataset (nnU-Net v2 or MSD, data/dataset.h) and preprocesses the chosen cases with
  // `pc` (the pretraining's preprocessing). Throws data::DataError when the dataset is unreadable or has
  // fewer than train_cases + val_cases cases.
  OnlineProbe(const std::string& dataset_dir, const data::PreprocessConfig& pc, const OnlineProbeConfig& cfg,
              const std::string& cache = "");
  // Fits a fresh linear head over a copy of `backbone` on `device` and returns the mean validation Dice
  // (mean over cases of the mean over classes, in [0, 1]). `backbone` is only read.
  double run(const models::FPN3d& backbone, Device device) const;

  const data::LabeledDataset& dataset() const { return ds_; }
  const std::vector<std::string>& train_ids() const { return train_ids_; }
  const std::vector<std::string>& val_ids() const { return val_ids_; }
  int classes() const { return int(ds_.label_names.size()) - 1; }

 private:
  OnlineProbeConfig cfg_;
  data::LabeledDataset ds_;
  std::vector<std::string> train_ids_, val_ids_;
  std::vector<data::PreprocessedCase> train_, val_;
};

}  // namespace hdssl::eval
