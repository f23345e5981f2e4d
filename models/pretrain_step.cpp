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

StepResult PretrainStep::run(const PretrainInputs& in, int64_t step) {
  StepResult r = compute_gradients(in);
  apply(r, step);
  return r;
}

StepResult PretrainStep::compute_gradients(const PretrainInputs& in) {
  StepResult r;
  {
    PretrainLoss loss = model_.loss(in);
    r.contrastive = LazyScalar(loss.contrastive.value());
    if (loss.restoration.defined()) r.restoration = LazyScalar(loss.restoration.value());
    r.total = LazyScalar(loss.total.value());
    loss.total.backward();
  }  // the graph goes with `loss`
  if (reducer_) reducer_->reduce(params_);  // hook: the data-parallel all-reduce
  return r;
}

void PretrainStep::apply(StepResult& r, int64_t step) {
  r.grad_norm = grad_norm(params_);  // a host read: clipping needs it (see clip_coefficient)
  if (s_.check_finite_loss && !std::isfinite(r.l()))
    throw StepDiverged(step, "step " + std::to_string(step) + ": the loss is not finite (L = " + num(r.l()) + ", Lc = " +
                                 num(r.lc()) + " [InfoNCE of the embeddings], Lr = " + num(r.lr()) +
                                 " [restoration MSE])");
  if (!std::isfinite(r.grad_norm))
    throw StepDiverged(step, "step " + std::to_string(step) + ": the gradient norm is not finite (first non-finite gradient: " +
                                 first_non_finite_gradient() + ")");
  adam_.step(clip_coefficient(r.grad_norm));
  adam_.zero_grad();
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
