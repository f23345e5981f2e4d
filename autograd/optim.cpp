// Adam and gradient-norm clipping (see optim.h for how clipping folds into the update).
#include "autograd/optim.h"

#include <algorithm>
#include <cmath>

namespace hdssl {

Adam::Adam(std::vector<Variable> params, AdamArgs args) : params_(std::move(params)), args_(args) {
  for (const Variable& p : params_) {
    HDSSL_CHECK(p.defined() && is_floating(p.dtype())) << "Adam: parameters must be defined float tensors";
    exp_avg_.push_back(Tensor::zeros(p.shape(), p.dtype(), p.device()));
    exp_avg_sq_.push_back(Tensor::zeros(p.shape(), p.dtype(), p.device()));
  }
  param_steps_.assign(params_.size(), 0);
  device_steps_.assign(params_.size(), -1);
  step_tensors_.resize(params_.size());
}

void Adam::set_host_counts(const HostCounts& c) {
  HDSSL_CHECK(c.param_steps.size() == params_.size() && c.device_steps.size() == params_.size())
      << "Adam::set_host_counts: " << c.param_steps.size() << " counts for " << params_.size() << " parameters";
  step_count_ = c.step_count;
  param_steps_ = c.param_steps;
  device_steps_ = c.device_steps;
}

void Adam::sync_device_count(size_t i) {
  const Variable& p = params_[i];
  if (!step_tensors_[i].defined()) step_tensors_[i] = Tensor::zeros({1}, DType::F64, p.device());
  if (device_steps_[i] != param_steps_[i]) {  // written in place: a captured step keeps naming this tensor
    step_tensors_[i].copy_(Tensor::from_vector<double>({double(param_steps_[i])}, {1}, Device::cpu()));
    device_steps_[i] = param_steps_[i];
  }
}

void Adam::sync_device_counts() {
  if (!device_counts_) return;
  for (size_t i = 0; i < params_.size(); ++i) sync_device_count(i);
}

void Adam::step(double grad_scale) { update(grad_scale, Tensor()); }
void Adam::step(const Tensor& grad_scale) {
  HDSSL_CHECK(grad_scale.defined()) << "Adam::step: the device scale tensor is undefined";
  update(1.0, grad_scale);
}

void Adam::update(double grad_scale, const Tensor& scale) {
  ++step_count_;
  for (size_t i = 0; i < params_.size(); ++i) {
    Variable& p = params_[i];
    if (!p.grad().defined()) continue;
    AdamArgs a = args_;
    Tensor count;  // undefined: the host's step number a.step
    if (device_counts_) {
      sync_device_count(i);
      count = step_tensors_[i];
      ++device_steps_[i];  // adam_step advances it on the device
    }
    a.step = ++param_steps_[i];
    backend(p.device()).adam_step(p.value(), p.grad(), exp_avg_[i], exp_avg_sq_[i], a, grad_scale, scale, count);
  }
}

void Adam::zero_grad() { hdssl::zero_grad(params_); }

double grad_norm(const std::vector<Variable>& params) {
  // One [1] accumulator per dtype and device: sum_squares adds into it, read once at the end.
  struct Acc { DType dtype; Device device; Tensor sum; };
  std::vector<Acc> accs;
  for (const Variable& p : params) {
    const Tensor& g = p.grad();
    if (!g.defined()) continue;
    Acc* acc = nullptr;
    for (Acc& a : accs) if (a.dtype == g.dtype() && a.device == g.device()) acc = &a;
    if (!acc) { accs.push_back({g.dtype(), g.device(), Tensor::zeros({1}, g.dtype(), g.device())}); acc = &accs.back(); }
    backend(g.device()).sum_squares(g, acc->sum);
  }
  double total = 0;
  for (const Acc& a : accs) total += a.sum.item();
  return std::sqrt(total);
}

double clip_coefficient(double total_norm, double max_norm) {
  return std::min(1.0, max_norm / (total_norm + 1e-6));
}

Tensor grad_sum_squares(const std::vector<Variable>& params) {
  Tensor sum;
  for (const Variable& p : params) {
    const Tensor& g = p.grad();
    if (!g.defined()) continue;
    if (!sum.defined()) sum = Tensor::zeros({1}, g.dtype(), g.device());
    else if (g.dtype() != sum.dtype() || g.device() != sum.device()) return Tensor();
    backend(g.device()).sum_squares(g, sum);
  }
  return sum;
}

Tensor clip_scale(const Tensor& sum_squares, double max_norm) {
  Tensor scale = Tensor::empty({1}, sum_squares.dtype(), sum_squares.device());
  backend(sum_squares.device()).clip_scale(sum_squares, max_norm, 1e-6, scale);  // 1e-6: clip_coefficient's
  return scale;
}

double clip_grad_norm(const std::vector<Variable>& params, double max_norm) {
  const double total = grad_norm(params);
  const double c = clip_coefficient(total, max_norm);
  for (Variable p : params) {  // a Variable is a handle: this copy shares the parameter
    const Tensor& g = p.grad();
    if (!g.defined()) continue;
    Tensor scaled = Tensor::empty_like(g);  // a new tensor: gradients may be shared between graph values
    backend(g.device()).axpby(c, g, 0.0, g, scaled);
    p.grad() = scaled;
  }
  return total;
}

void zero_grad(const std::vector<Variable>& params) {
  for (Variable p : params) p.zero_grad();
}

}  // namespace hdssl
