// PretrainStep: one optimizer step of pretraining, the only copy of it (docs/pretraining-step.md section 7).
//
//   batch in -> Pretrainer::loss() (Lc, Lr, L) -> backward -> [gradient all-reduce] -> gradient norm
//   -> non-finite checks -> clip coefficient -> Adam (gradients scaled by it) -> zero_grad -> terms out
//
// ./pretrain, ./bench --what step, the CUDA step-parity test and the PyTorch fixture test all run this
// class. Two places are hooks for later work and are the only places to change for it:
//   - GradientReducer::reduce() runs between the backward pass and the norm (data-parallel training
//     averages the gradients there);
//   - PretrainStep::clip_coefficient() is the one function that turns the norm into Adam's gradient
//     scale (a device-side clip replaces it and the host read of the norm).
// The loss terms stay on the device (StepResult holds 1-element tensors) and are copied to the host
// when first asked for; with check_finite_loss (the default) the step asks for them itself every step.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "autograd/optim.h"
#include "models/pretrainer.h"

namespace hdssl::models {

// Sums (or averages) every parameter's gradient across processes, in place. None by default.
class GradientReducer {
 public:
  virtual ~GradientReducer() = default;
  virtual void reduce(const std::vector<Variable>& params) = 0;
};

// A 1-element device tensor read to the host once, when first asked for (0 when undefined).
class LazyScalar {
 public:
  LazyScalar() = default;
  explicit LazyScalar(Tensor t) : t_(std::move(t)) {}
  double get() const;
  bool defined() const { return t_.defined(); }
  const Tensor& tensor() const { return t_; }

 private:
  Tensor t_;
  mutable std::optional<double> host_;
};

struct StepResult {
  LazyScalar contrastive, restoration, total;  // Lc, Lr (undefined without restoration: reads 0), L
  double grad_norm = 0;                        // before clipping; set by PretrainStep::apply()
  double lc() const { return contrastive.get(); }
  double lr() const { return restoration.get(); }
  double l() const { return total.get(); }
};

// The step met NaN or Inf: the message names the step and the term, or the first parameter whose
// gradient is not finite. Thrown before Adam: the parameters and Adam's state are unchanged (the forward
// pass has updated the BatchNorm running statistics, and the gradients are left for inspection).
struct StepDiverged : Error {
  StepDiverged(int64_t s, const std::string& m) : Error(m), step(s) {}
  int64_t step;
};

struct StepSettings {
  double lr = 3e-4;               // Adam's learning rate (betas 0.9 / 0.999, eps 1e-8)
  double clip = 1.0;              // max gradient norm; 0 turns clipping off
  bool check_finite_loss = true;  // read Lc, Lr, L every step and stop on NaN / Inf
};

class PretrainStep {
 public:
  // The model must outlive the step; Adam is created here over model.parameters().
  PretrainStep(Pretrainer& model, const StepSettings& s = {}, GradientReducer* reducer = nullptr);

  // One whole step; `step` (1-based) only names the step in errors. Throws StepDiverged.
  StepResult run(const PretrainInputs& in, int64_t step);

  // run() is these two, in this order; tests inspect the gradients in between.
  StepResult compute_gradients(const PretrainInputs& in);  // loss, backward, reducer
  void apply(StepResult& r, int64_t step);                  // norm, checks, clip, Adam, zero_grad

  // Adam's gradient scale for a gradient norm: PyTorch's clip_grad_norm_ factor, or 1 when clip is 0.
  double clip_coefficient(double grad_norm) const;

  Adam& optimizer() { return adam_; }
  const Adam& optimizer() const { return adam_; }
  const std::vector<Variable>& parameters() const { return params_; }
  const StepSettings& settings() const { return s_; }
  void set_lr(double lr) { s_.lr = lr; adam_.set_lr(lr); }

 private:
  std::string first_non_finite_gradient() const;
  Pretrainer& model_;
  StepSettings s_;
  GradientReducer* reducer_;
  std::vector<Variable> params_;
  Adam adam_;
};

}  // namespace hdssl::models
