// Model selection: the validation split, the validation Dice, and the best-checkpoint file.
#include "eval/selection.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "eval/dice.h"
#include "eval/folds.h"
#include "eval/inference.h"
#include "eval/sliding_window.h"
#include "models/checkpoint.h"

namespace hdssl::eval {

nlohmann::json selection_config_to_json(const SelectionConfig& c) {
  return {{"val_fraction", c.fraction}, {"val_every", c.every}, {"enabled", c.enabled()}};
}

static std::vector<std::string> seeded_pick(std::vector<std::string> v, size_t k, uint64_t seed) {
  std::sort(v.begin(), v.end());
  Rng rng(seed, 0x5e1ec7);
  for (int64_t i = int64_t(v.size()) - 1; i > 0; --i) std::swap(v[size_t(i)], v[size_t(rng.randint(0, i + 1))]);
  v.resize(std::min(k, v.size()));
  std::sort(v.begin(), v.end());
  return v;
}

TrainValSplit selection_split(const std::vector<std::string>& fold_train, int train_cases, const SelectionConfig& cfg,
                              uint64_t seed) {
  TrainValSplit s;
  if (!cfg.enabled()) {
    s.train = few_label_subset(fold_train, train_cases, seed);
    return s;
  }
  const size_t n = fold_train.size();
  const size_t v = std::max<size_t>(1, size_t(std::llround(cfg.fraction * double(n))));
  if (train_cases > 0 && size_t(train_cases) < n) {
    s.train = few_label_subset(fold_train, train_cases, seed);
    std::vector<std::string> rest;
    for (const auto& c : fold_train)
      if (std::find(s.train.begin(), s.train.end(), c) == s.train.end()) rest.push_back(c);
    s.val = seeded_pick(rest, v, seed);
    return s;
  }
  if (n < 2)
    throw Error("model selection needs at least 2 training cases in a fold (one to validate on), the fold has " +
                std::to_string(n));
  s.val = seeded_pick(fold_train, std::min(v, n - 1), seed);
  for (const auto& c : fold_train)
    if (std::find(s.val.begin(), s.val.end(), c) == s.val.end()) s.train.push_back(c);
  std::sort(s.train.begin(), s.train.end());
  return s;
}

double validation_dice(models::Segmenter& model, const std::vector<const data::PreprocessedCase*>& cases,
                       data::Dims3 patch, int classes, int window_batch, Device device) {
  HDSSL_CHECK(!cases.empty()) << "validation_dice: no validation cases";
  model.train(false);
  double sum = 0;
  for (const data::PreprocessedCase* c : cases) {
    Tensor probs = predict_probabilities({&model}, c->image.image, patch, window_batch, device);
    data::Volume pred = labels_from_probabilities(probs, c->image.image, 0.5);
    std::vector<double> d = dice_per_class(pred, c->labels, classes);
    double m = 0;
    for (double x : d) m += x;
    sum += m / double(classes);
  }
  return sum / double(cases.size());
}

BestCheckpoint::BestCheckpoint(std::string path) : path_(std::move(path)) {
  if (!std::filesystem::exists(path_)) return;
  models::SafeTensors st = models::read_safetensors(path_);
  try {
    best_step_ = std::stoll(st.metadata.at("hdssl.step"));
    best_dice_ = std::stod(st.metadata.at("hdssl.val_dice"));
    for (const auto& e : nlohmann::json::parse(st.metadata.at("hdssl.val_history")))
      history_.emplace_back(e.at(0).get<int64_t>(), e.at(1).get<double>());
  } catch (const std::exception& e) {
    throw models::CheckpointError(path_ + ": not a best-validation checkpoint (" + e.what() + ")");
  }
}

bool BestCheckpoint::offer(int64_t step, double dice, const Trainer& trainer,
                           const std::map<std::string, std::string>& meta) {
  history_.emplace_back(step, dice);
  if (best_step_ >= 0 && !(dice > best_dice_)) return false;  // ties keep the earlier step
  best_step_ = step;
  best_dice_ = dice;
  std::map<std::string, std::string> m = meta;
  m["hdssl.val_dice"] = nlohmann::json(dice).dump();
  m["hdssl.val_history"] = nlohmann::json(history_).dump();
  trainer.save(path_, step, m);
  return true;
}

int64_t BestCheckpoint::restore(Trainer& trainer) const {
  if (best_step_ < 0) throw Error(path_ + ": no validation step recorded, nothing to restore");
  return trainer.load(path_);
}

}  // namespace hdssl::eval
