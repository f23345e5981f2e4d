// Adam and the training helpers around it, with PyTorch's semantics (torch.optim.Adam without weight
// decay or amsgrad; torch.nn.utils.clip_grad_norm_).
//
// Gradient-norm clipping without an extra pass: clip_grad_norm() multiplies every gradient by
//   c = min(1, max_norm / (total_norm + 1e-6)),
// and Adam's first use of a gradient is g * grad_scale. So the usual
//   clip_grad_norm(params, 1.0); opt.step();
// and the fused
//   opt.step(clip_coefficient(grad_norm(params), 1.0));
// give the same update (the same float operations, in fact); the second never rewrites the gradients.
// Without a host read of the norm (models::PretrainStep between its log steps), all on the device:
//   opt.step(clip_scale(grad_sum_squares(params), 1.0));
// the same factor, computed in double on the device, the same update bit for bit.
#pragma once
#include <cstdint>
#include <vector>

#include "autograd/variable.h"
#include "engine/backend.h"

namespace hdssl {

class Adam {
 public:
  // lr, betas and eps come from args; args.step is ignored (each parameter counts its own steps).
  Adam(std::vector<Variable> params, AdamArgs args = {});

  // One update of every parameter that has a gradient, its gradient first multiplied by grad_scale.
  // A parameter without a gradient is skipped and its step count does not advance (PyTorch: a parameter
  // unused for the first 1,000 steps then starts with bias correction of step 1).
  void step(double grad_scale = 1.0);
  // The same with the factor read on the device from a [1] tensor of the parameters' dtype and device
  // (clip_scale() below): nothing is read back to the host.
  void step(const Tensor& grad_scale);
  void zero_grad();  // drops every parameter's gradient (PyTorch's set_to_none)

  // State, for checkpoints. exp_avg / exp_avg_sq hold one tensor per parameter (zeros until its first
  // update, which is what PyTorch's lazily created state would hold); param_steps are the per-parameter
  // step counts used for bias correction; step_count is the number of step() calls.
  int64_t step_count() const { return step_count_; }
  void set_step_count(int64_t s) { step_count_ = s; }
  std::vector<Tensor>& exp_avg() { return exp_avg_; }
  std::vector<Tensor>& exp_avg_sq() { return exp_avg_sq_; }
  std::vector<int64_t>& param_steps() { return param_steps_; }
  const std::vector<Tensor>& exp_avg() const { return exp_avg_; }  // read-only views, for saving
  const std::vector<Tensor>& exp_avg_sq() const { return exp_avg_sq_; }
  const std::vector<int64_t>& param_steps() const { return param_steps_; }
  const std::vector<Variable>& params() const { return params_; }
  double lr() const { return args_.lr; }
  void set_lr(double lr) { args_.lr = lr; }

  // Device step counts (off by default): each parameter's step number also lives in a float64 [1] tensor
  // on its device, which adam_step advances and reads for the bias corrections, so no kernel argument
  // changes from step to step and a captured step (engine/step_graph.h) replays with the right step. The
  // update is the same, bit for bit on the CPU. The host counts above stay the truth for checkpoints: a
  // device count that differs from its host count (set_step_count / param_steps() edited, a checkpoint
  // loaded) is written from the host before its next update. models::PretrainStep turns this on.
  void count_steps_on_device(bool on) { device_counts_ = on; }
  bool counts_steps_on_device() const { return device_counts_; }
  // The host bookkeeping alone (what a capture, which runs nothing, must undo, and a replay, which runs no
  // host code, must redo): step_count, param_steps and the host's record of the device counts.
  struct HostCounts {
    int64_t step_count = 0;
    std::vector<int64_t> param_steps, device_steps;
  };
  HostCounts host_counts() const { return {step_count_, param_steps_, device_steps_}; }
  void set_host_counts(const HostCounts& c);
  // Writes every device count that differs from its host count now (a capture must not need the upload).
  void sync_device_counts();

 private:
  std::vector<Variable> params_;
  AdamArgs args_;
  void update(double grad_scale, const Tensor& scale);
  void sync_device_count(size_t i);
  int64_t step_count_ = 0;
  std::vector<Tensor> exp_avg_, exp_avg_sq_;
  std::vector<int64_t> param_steps_;
  bool device_counts_ = false;
  std::vector<Tensor> step_tensors_;   // device counts, one float64 [1] per parameter (created on first use)
  std::vector<int64_t> device_steps_;  // what each of them holds (-1: not written yet)
};

// The 2-norm of all gradients together (parameters without a gradient contribute nothing).
double grad_norm(const std::vector<Variable>& params);
// PyTorch's clip factor: min(1, max_norm / (total_norm + 1e-6)).
double clip_coefficient(double total_norm, double max_norm);
// The sum of squares of all gradients as a [1] tensor on their device, nothing read to the host; undefined
// when no parameter has a gradient or the gradients span several dtypes or devices (use grad_norm then).
Tensor grad_sum_squares(const std::vector<Variable>& params);
// clip_coefficient(sqrt(sum_squares[0]), max_norm) computed on sum_squares' device, as a [1] tensor there.
Tensor clip_scale(const Tensor& sum_squares, double max_norm);
// torch.nn.utils.clip_grad_norm_: scales every gradient by clip_coefficient(total, max_norm) in place and
// returns total, the norm before clipping. Prefer grad_norm + Adam::step(scale) in a training loop.
double clip_grad_norm(const std::vector<Variable>& params, double max_norm);
void zero_grad(const std::vector<Variable>& params);

}  // namespace hdssl
