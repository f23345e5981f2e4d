// Downstream training of a Segmenter (docs/method.md section 6): the four evaluation modes, the learning-rate
// schedule of the backbone, one optimizer step on a batch, and resumable checkpoints.
//
//   linear     LinearProbe on a frozen backbone (eval-mode BatchNorm, no gradient), for every step.
//   nonlinear  NonLinearHead on a frozen backbone, for every step (a non-linear probe).
//   finetune   NonLinearHead (or, with head = linear, the LinearProbe: the published program);
//              backbone frozen for the first `freeze_steps` - BatchNorm in training mode (batch statistics,
//              running statistics re-estimated: the program's Lightning BackboneFinetuning) unless
//              frozen_bn_training is false (eval mode on the pretraining statistics) -, then trained with
//              its own Adam whose learning rate rises exponentially from backbone_lr_start to lr over
//              `warmup_steps`: lr_b(u) = start * (lr / start)^(u / warmup) for u = step - freeze_steps,
//              capped at lr (paper: 3e-5 -> 3e-4 over 1,200 steps after 15,000 frozen steps).
//   scratch    the fine-tuning head on a randomly initialised backbone, everything trained from step 0 at lr.
// Loss: BCE with logits + soft Dice of the sigmoid probabilities (mean over patches and classes).
// The head always has its own Adam at `lr`. No gradient clipping (the paper names none downstream).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "autograd/optim.h"
#include "eval/patches.h"
#include "models/segmentation.h"

namespace hdssl::eval {

enum class Mode { Linear, NonLinear, Finetune, Scratch };
// linear | nonlinear | finetune | scratch, and the reference program's names probing, fine_tuning
// (also fine-tuning), from_scratch.
Mode parse_mode(const std::string& s);
const char* mode_name(Mode m);
// The head of a mode: linear -> LinearProbe, nonlinear -> NonLinearHead, finetune and scratch ->
// `finetune_head` (paper: non-linear; published program: linear).
models::HeadKind head_of(Mode m, models::HeadKind finetune_head = models::HeadKind::NonLinear);

struct TrainConfig {
  Mode mode = Mode::Linear;
  int64_t steps = 45000;
  int batch = 7;
  double lr = 3e-4;                 // head (and, in scratch, backbone) learning rate
  int64_t freeze_steps = 15000;     // finetune: backbone frozen for these first steps
  int64_t warmup_steps = 1200;      // finetune: exponential warm-up length after unfreezing
  double backbone_lr_start = 3e-5;  // finetune: backbone learning rate right after unfreezing
  // finetune: BatchNorm of the frozen backbone in training mode (the published program) or eval mode.
  // Linear and nonlinear probing always keep eval mode (the program's probing.py does too).
  bool frozen_bn_training = true;
};
nlohmann::json train_config_to_json(const TrainConfig& c);

// Whether the backbone is frozen during step `t` (0-based), and its learning rate then (0 when frozen).
bool backbone_frozen_at(const TrainConfig& c, int64_t t);
double backbone_lr_at(const TrainConfig& c, int64_t t);

struct StepResult {
  double loss = 0, bce = 0, dice = 0, backbone_lr = 0;
};

class Trainer {
 public:
  // The model must already be on `device`.
  Trainer(models::Segmenter& model, const TrainConfig& cfg, Device device);
  // One optimizer step on `batch` as step number t (0-based; sets freezing and learning rates for t).
  StepResult step(const PatchBatch& batch, int64_t t);
  // BCE + soft Dice of logits against targets (both on the same device), as Variables.
  static Variable loss(const Variable& logits, const Tensor& target, Variable* bce = nullptr, Variable* dice = nullptr);

  // Model state + both optimizers + `meta` (strings) in one .safetensors file, written atomically.
  // `completed_steps` goes into the metadata as "hdssl.step".
  void save(const std::string& path, int64_t completed_steps, const std::map<std::string, std::string>& meta) const;
  // Restores what save wrote (strict by name); returns the completed steps.
  int64_t load(const std::string& path);

 private:
  models::Segmenter& model_;
  TrainConfig cfg_;
  Device device_;
  std::unique_ptr<Adam> head_opt_, backbone_opt_;
};

}  // namespace hdssl::eval
