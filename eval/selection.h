// Model selection inside a fold (issue 11 (c), as the published program: it tests the checkpoint with the
// best validation Dice, Lightning ModelCheckpoint(monitor='val/head_0_avg_dice_score', mode='max')).
//
// The validation list lies inside the fold's training cases, never in its test cases:
//   - all training cases (train_cases <= 0 or >= the fold's training cases): v = max(1, round(fraction * n))
//     of the n training cases, seeded, are held out for validation and the rest are trained on (n >= 2);
//   - few-label runs (train_cases = m < n): the m training cases are few_label_subset's (unchanged), and
//     v = max(1, round(fraction * n)) of the n - m cases left over validate (capped at n - m).
// Every `every` steps (and after the last) the model's mean validation Dice (sliding window, the same
// rule as the test) is offered to BestCheckpoint, which keeps the best one in a file; the test then uses
// it. Ties keep the earlier step. fraction = 0 (or every = 0) turns selection off: the last step is tested.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "data/dataset.h"
#include "eval/trainer.h"

namespace hdssl::eval {

struct SelectionConfig {
  double fraction = 0.2;  // share of the fold's training cases used for validation (0: no selection)
  int64_t every = 0;      // steps between validations; 0: no selection (today's: the last step is tested)
  bool enabled() const { return fraction > 0 && every > 0; }
};
nlohmann::json selection_config_to_json(const SelectionConfig& c);

struct TrainValSplit {
  std::vector<std::string> train, val;  // both sorted
};
// The rule above; with selection off, train = few_label_subset(fold_train, train_cases, seed), val empty.
// Throws Error when a validation list cannot be made (one training case, or no case left over).
TrainValSplit selection_split(const std::vector<std::string>& fold_train, int train_cases, const SelectionConfig& cfg,
                              uint64_t seed);

// Mean over cases of the mean Dice over classes (the fold summary's overall) of the model on `cases`;
// the model is left in eval mode.
double validation_dice(models::Segmenter& model, const std::vector<const data::PreprocessedCase*>& cases,
                       data::Dims3 patch, int classes, int window_batch, Device device);

// The best validation step so far, kept as an evaluation checkpoint at `path` (Trainer::save, with
// metadata hdssl.val_dice and hdssl.val_history). Constructing it on an existing file resumes from it.
class BestCheckpoint {
 public:
  explicit BestCheckpoint(std::string path);
  // Records (step, dice); when dice beats the best so far, saves the trainer's model there. Returns
  // whether it did.
  bool offer(int64_t step, double dice, const Trainer& trainer, const std::map<std::string, std::string>& meta);
  // Loads the best model into the trainer (and its model); returns its step. Throws Error when none.
  int64_t restore(Trainer& trainer) const;
  int64_t best_step() const { return best_step_; }
  double best_dice() const { return best_dice_; }
  const std::vector<std::pair<int64_t, double>>& history() const { return history_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int64_t best_step_ = -1;
  double best_dice_ = -1;
  std::vector<std::pair<int64_t, double>> history_;  // every offer, in order
};

}  // namespace hdssl::eval
