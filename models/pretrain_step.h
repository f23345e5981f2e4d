// PretrainStep: one optimizer step of pretraining, the only copy of it (docs/pretraining-step.md section 7).
//
//   batch in -> Pretrainer::loss() (Lc, Lr, L; under settings().precision) -> backward -> [gradient
//   all-reduce] -> sum of squared gradients -> [log step: host read, non-finite checks] -> clip coefficient
//   -> Adam (gradients scaled by it) -> zero_grad -> terms out
//
// ./pretrain, ./bench --what step, the CUDA step-parity test and the PyTorch fixture test all run this
// class. Two places are hooks for later work and are the only places to change for it:
//   - GradientReducer::reduce() runs between the backward pass and the norm (data-parallel training
//     averages the gradients there);
//   - PretrainStep::clip_scale() turns the sum of squared gradients into Adam's gradient scale on the
//     device (clip_coefficient() is the same rule on the host, for a norm already read).
// No host sync inside a step, except at a log step: the loss terms and the sum of squared gradients stay
// on the device (StepResult holds 1-element tensors, copied to the host when first asked for), the clip
// factor is computed on the device and Adam reads it there. A log step (every settings().log_every-th, or
// when run() is asked to check) reads the gradient norm, and with check_finite_loss the loss terms, and
// throws StepDiverged before Adam when one is not finite. Between log steps a non-finite value goes
// unseen: up to log_every - 1 steps may run on it before the next log step stops the run, so a caller
// saves a checkpoint only after a checked step (./pretrain checks every step it saves).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "autograd/autocast.h"
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
  LazyScalar grad_sum_squares;                 // sum of squared gradients before clipping, on the device
  bool checked = false;                        // a log step: grad_norm read and the checks made
  double grad_norm = 0;                        // before clipping; set by PretrainStep::apply() when checked
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
  bool check_finite_loss = true;  // at log steps, read Lc, Lr, L and stop on NaN / Inf
  int64_t log_every = 1;          // log steps: multiples of this (1: every step), and run(.., check = true)
  Precision precision = Precision::FP32;  // the forward runs under AutocastGuard(precision) (--precision)
  // --cuda-graph: after graph_warmup eager steps, capture one step (engine/step_graph.h) and replay it for
  // every later step (docs/pretraining-step.md section 9). On the CPU the capture is the recorder.
  bool graph = false;
  int64_t graph_warmup = 2;  // eager steps before the capture (CUDA: cuDNN's algorithm search runs there)
};

class PretrainStep {
 public:
  // The model must outlive the step; Adam is created here over model.parameters() and counts its steps
  // on the device (Adam::count_steps_on_device: the same update, and what a captured step needs).
  // With s.graph, a GradientReducer or a negatives gather (Pretrainer::set_negatives_gather) is refused
  // (hdssl::Error): their host-side communication cannot be captured.
  PretrainStep(Pretrainer& model, const StepSettings& s = {}, GradientReducer* reducer = nullptr);
  ~PretrainStep();

  // One whole step; `step` (1-based) names the step in errors and makes it a log step when it is a
  // multiple of log_every; `check` makes it one anyway. Throws StepDiverged (at log steps only).
  // With settings().graph: the first graph_warmup calls run eagerly, the next captures the step and every
  // call from then on replays it (the batch copied into the captured input tensors first; its shapes must
  // not change, nor the learning rate: hdssl::Error). A replayed log step makes its checks after the
  // update (the update is inside the graph): StepDiverged then leaves the diverged update applied, which
  // ./pretrain never saves (it stops without saving on StepDiverged).
  StepResult run(const PretrainInputs& in, int64_t step, bool check = false);
  bool captured() const { return graph_ != nullptr; }
  size_t captured_calls() const;  // primitive calls (CPU) or graph nodes (CUDA) of the captured step; 0: none

  // run() is these two, in this order; tests inspect the gradients in between.
  StepResult compute_gradients(const PretrainInputs& in);           // loss, backward, reducer
  void apply(StepResult& r, int64_t step, bool check = false);       // norm, checks, clip, Adam, zero_grad
  bool is_log_step(int64_t step) const { return s_.log_every <= 1 || step % s_.log_every == 0; }

  // Adam's gradient scale for a gradient norm: PyTorch's clip_grad_norm_ factor, or 1 when clip is 0.
  double clip_coefficient(double grad_norm) const;
  // The same factor on the device, from the sum of squared gradients (clip > 0 only).
  Tensor clip_scale(const Tensor& grad_sum_squares) const;

  Adam& optimizer() { return adam_; }
  const Adam& optimizer() const { return adam_; }
  const std::vector<Variable>& parameters() const { return params_; }
  const StepSettings& settings() const { return s_; }
  void set_lr(double lr);  // refused (hdssl::Error) once a step is captured with another lr

 private:
  struct Captured;
  std::string first_non_finite_gradient() const;
  void capture(const PretrainInputs& in);
  void update(const Tensor& grad_sum_squares);
  StepResult replay(const PretrainInputs& in, int64_t step, bool check);
  void check_result(StepResult& r, int64_t step);
  std::unique_ptr<Captured> graph_;
  int64_t eager_runs_ = 0;
  Pretrainer& model_;
  StepSettings s_;
  GradientReducer* reducer_;
  std::vector<Variable> params_;
  Adam adam_;
};

}  // namespace hdssl::models
