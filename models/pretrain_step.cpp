// The pretraining step (see pretrain_step.h for its order and its two hooks).
#include "models/pretrain_step.h"

#include <cmath>
#include <cstdio>

#include "engine/backend.h"

namespace hdssl::models {

namespace {
std::string num(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%g", v);
  return b;
}
AdamArgs adam_args(const StepSettings& s) {
  AdamArgs a;
  a.lr = s.lr;
  return a;
}
}  // namespace

double LazyScalar::get() const {
  if (!t_.defined()) return 0.0;
  if (!host_) host_ = t_.item();
  return *host_;
}

PretrainStep::PretrainStep(Pretrainer& model, const StepSettings& s, GradientReducer* reducer)
    : model_(model), s_(s), reducer_(reducer), params_(model.parameters()), adam_(params_, adam_args(s)) {}

StepResult PretrainStep::run(const PretrainInputs& in, int64_t step, bool check) {
  StepResult r = compute_gradients(in);
  apply(r, step, check);
  return r;
}

StepResult PretrainStep::compute_gradients(const PretrainInputs& in) {
  StepResult r;
  {
    PretrainLoss loss;
    {
      AutocastGuard precision(s_.precision);  // mixed precision: the forward only; the casts it recorded
      loss = model_.loss(in);                 // drive the backward (docs/mixed-precision.md)
    }
    r.contrastive = LazyScalar(loss.contrastive.value());
    if (loss.restoration.defined()) r.restoration = LazyScalar(loss.restoration.value());
    r.total = LazyScalar(loss.total.value());
    loss.total.backward();
  }  // the graph goes with `loss`
  if (reducer_) reducer_->reduce(params_);  // hook: the data-parallel all-reduce
  return r;
}

void PretrainStep::apply(StepResult& r, int64_t step, bool check) {
  const Tensor sum = grad_sum_squares(params_);  // on the device; undefined: no gradient, or mixed dtypes
  r.grad_sum_squares = LazyScalar(sum);
  r.checked = check || is_log_step(step) || !sum.defined();
  if (!r.checked) {  // no host read: the clip factor is computed and used on the device
    if (s_.clip > 0) adam_.step(clip_scale(sum));
    else adam_.step(1.0);
    adam_.zero_grad();
    return;
  }
  // A log step: the norm is read (sqrt of the same sum, so the same value grad_norm() would give).
  r.grad_norm = sum.defined() ? std::sqrt(r.grad_sum_squares.get()) : grad_norm(params_);
  if (s_.check_finite_loss && !std::isfinite(r.l()))
    throw StepDiverged(step, "step " + std::to_string(step) + ": the loss is not finite (L = " + num(r.l()) +
                                 ", Lc = " + num(r.lc()) + " [InfoNCE of the embeddings], Lr = " + num(r.lr()) +
                                 " [restoration MSE])");
  if (!std::isfinite(r.grad_norm))
    throw StepDiverged(step, "step " + std::to_string(step) +
                                 ": the gradient norm is not finite (first non-finite gradient: " +
                                 first_non_finite_gradient() + ")");
  if (sum.defined() && s_.clip > 0) adam_.step(clip_scale(sum));  // the factor of a non-log step, bit for bit
  else adam_.step(clip_coefficient(r.grad_norm));
  adam_.zero_grad();
}

Tensor PretrainStep::clip_scale(const Tensor& grad_sum_squares) const {
  HDSSL_CHECK(s_.clip > 0) << "PretrainStep::clip_scale: clipping is off (clip 0)";
  return hdssl::clip_scale(grad_sum_squares, s_.clip);
}

double PretrainStep::clip_coefficient(double norm) const {
  return s_.clip > 0 ? hdssl::clip_coefficient(norm, s_.clip) : 1.0;
}

std::string PretrainStep::first_non_finite_gradient() const {
  for (auto& [name, v] : model_.named_parameters()) {
    if (!v.grad().defined()) continue;
    Tensor s = Tensor::zeros({1}, v.grad().dtype(), v.grad().device());
    backend(v.device()).sum_squares(v.grad(), s);
    if (!std::isfinite(s.item())) return name;
  }
  return "?";
}

}  // namespace hdssl::models
