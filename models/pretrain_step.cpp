// The pretraining step (see pretrain_step.h for its order and its two hooks).
#include "models/pretrain_step.h"

#include <cmath>
#include <cstdio>

#include "engine/backend.h"
#include "engine/step_graph.h"

namespace hdssl::models {

namespace {
std::string num(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%g", v);
  return b;
}
std::vector<Tensor> input_list(const PretrainInputs& in) {
  return {in.view_a, in.view_b, in.target_a, in.target_b, in.coords_a, in.coords_b};
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

// The captured step (settings().graph): the graph, the tensors it reads its batch from and writes its
// results to, and Adam's host bookkeeping just before and just after the capture (the capture ran nothing,
// so its host-side counting is undone and redone at every replay).
struct PretrainStep::Captured {
  std::unique_ptr<StepGraph> graph;
  std::vector<Tensor> inputs;                   // the batch the capture read: each replay's is copied here
  Tensor contrastive, restoration, total, sum;  // written by every replay
  Adam::HostCounts before, after;
  std::vector<int64_t*> counters;     // host-side buffer counters (BatchNorm's num_batches_tracked)...
  std::vector<int64_t> counter_steps;  // ...and how much one step advances each
  double lr = 0;
};

PretrainStep::PretrainStep(Pretrainer& model, const StepSettings& s, GradientReducer* reducer)
    : model_(model), s_(s), reducer_(reducer), params_(model.parameters()), adam_(params_, adam_args(s)) {
  adam_.count_steps_on_device(true);  // no step number among the kernel arguments (a capture freezes them)
  HDSSL_CHECK(!(s_.graph && reducer_))
      << "--cuda-graph: a captured step cannot include the gradient all-reduce (MPI runs on the host); "
         "run with one process or without --cuda-graph";
  HDSSL_CHECK(s_.graph_warmup >= 0) << "PretrainStep: graph_warmup must be >= 0, got " << s_.graph_warmup;
}

PretrainStep::~PretrainStep() = default;

StepResult PretrainStep::run(const PretrainInputs& in, int64_t step, bool check) {
  if (s_.graph && !graph_ && eager_runs_ >= s_.graph_warmup) capture(in);
  if (graph_) return replay(in, step, check);
  ++eager_runs_;
  StepResult r = compute_gradients(in);
  apply(r, step, check);
  return r;
}

size_t PretrainStep::captured_calls() const { return graph_ ? graph_->graph->nodes() : 0; }

void PretrainStep::set_lr(double lr) {
  HDSSL_CHECK(!graph_ || lr == graph_->lr) << "PretrainStep::set_lr(" << lr << "): the step was captured with lr "
                                           << graph_->lr << " (--cuda-graph freezes the learning rate)";
  s_.lr = lr;
  adam_.set_lr(lr);
}

void PretrainStep::capture(const PretrainInputs& in) {
  HDSSL_CHECK(!reducer_ && !model_.gathers_negatives())
      << "--cuda-graph: a captured step cannot include the gradient all-reduce or the negatives gather "
         "(MPI runs on the host); run with one process or without --cuda-graph";
  // The captured backward would add into a gradient left from an earlier call (compute_gradients(), or a
  // step stopped by StepDiverged), in place, at every replay: each replayed step would then see the sum of
  // all steps so far. A step starts without gradients (zero_grad drops them), so a leftover one is refused.
  for (auto& [name, v] : model_.named_parameters())
    HDSSL_CHECK(!v.grad().defined())
        << "--cuda-graph: parameter " << name << " still has a gradient from an earlier call (compute_gradients, "
           "or a step stopped by StepDiverged); drop it (optimizer().zero_grad()) before the step is captured";
  auto g = std::make_unique<Captured>();
  for (const Tensor& t : input_list(in))  // before the capture: kept by g (targets may be absent)
    g->inputs.push_back(t.defined() ? t.clone() : Tensor());
  adam_.sync_device_counts();  // a host write: before the capture, which refuses them
  g->before = adam_.host_counts();
  std::vector<int64_t> counters_before;
  for (auto& [name, b] : model_.named_buffers())
    if (b.counter) {
      g->counters.push_back(b.counter);
      counters_before.push_back(*b.counter);
    }
  auto restore_counters = [&] {
    for (size_t i = 0; i < g->counters.size(); ++i) *g->counters[i] = counters_before[i];
  };
  g->lr = s_.lr;
  const Device device = in.view_a.device();
  try {
    CaptureGuard capture(device);
    const std::vector<Tensor>& x = g->inputs;
    StepResult r = compute_gradients({x[0], x[1], x[2], x[3], x[4], x[5]});
    const Tensor sum = grad_sum_squares(params_);
    HDSSL_CHECK(sum.defined()) << "--cuda-graph: the gradients span several dtypes or devices (or there are "
                                  "none); the step needs a host read of their norm and cannot be captured";
    update(sum);
    g->contrastive = r.contrastive.tensor();
    g->restoration = r.restoration.tensor();
    g->total = r.total.tensor();
    g->sum = sum;
    g->graph = capture.end();
  } catch (...) {
    adam_.set_host_counts(g->before);
    restore_counters();
    adam_.zero_grad();  // gradients the aborted capture recorded but never computed (their memory is garbage)
    throw;
  }
  g->after = adam_.host_counts();
  adam_.set_host_counts(g->before);  // nothing ran: the first replay takes this step
  for (size_t i = 0; i < g->counters.size(); ++i) g->counter_steps.push_back(*g->counters[i] - counters_before[i]);
  restore_counters();
  graph_ = std::move(g);
}

StepResult PretrainStep::replay(const PretrainInputs& in, int64_t step, bool check) {
  Captured& g = *graph_;
  static const char* const names[] = {"view_a", "view_b", "target_a", "target_b", "coords_a", "coords_b"};
  const std::vector<Tensor> batch = input_list(in);
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!batch[i].defined() && !g.inputs[i].defined()) continue;
    HDSSL_CHECK(batch[i].defined() && g.inputs[i].defined() && batch[i].shape() == g.inputs[i].shape() &&
                batch[i].dtype() == g.inputs[i].dtype() && batch[i].device() == g.inputs[i].device())
        << "step " << step << ": the batch's " << names[i] << " is " << batch[i].describe()
        << ", but the step was captured with " << g.inputs[i].describe()
        << " (--cuda-graph needs fixed batch shapes)";
    if (batch[i].raw() != g.inputs[i].raw()) g.inputs[i].copy_(batch[i].is_contiguous() ? batch[i] : batch[i].clone());
  }
  g.graph->replay();
  // Adam's host bookkeeping of the step the graph just took.
  Adam::HostCounts c = adam_.host_counts();
  c.step_count += g.after.step_count - g.before.step_count;
  for (size_t i = 0; i < c.param_steps.size(); ++i) {
    c.param_steps[i] += g.after.param_steps[i] - g.before.param_steps[i];
    c.device_steps[i] += g.after.device_steps[i] - g.before.device_steps[i];
  }
  adam_.set_host_counts(c);
  for (size_t i = 0; i < g.counters.size(); ++i) *g.counters[i] += g.counter_steps[i];
  // The results in tensors of their own (the captured ones are overwritten by the next replay).
  StepResult r;
  r.contrastive = LazyScalar(g.contrastive.clone());
  if (g.restoration.defined()) r.restoration = LazyScalar(g.restoration.clone());
  r.total = LazyScalar(g.total.clone());
  r.grad_sum_squares = LazyScalar(g.sum.clone());
  r.checked = check || is_log_step(step);
  if (r.checked) check_result(r, step);
  return r;
}

// A replayed log step's checks, after its update (the update is inside the graph).
void PretrainStep::check_result(StepResult& r, int64_t step) {
  r.grad_norm = std::sqrt(r.grad_sum_squares.get());
  const std::string after = " (--cuda-graph: found after the replayed update, which is applied)";
  if (s_.check_finite_loss && !std::isfinite(r.l()))
    throw StepDiverged(step, "step " + std::to_string(step) + ": the loss is not finite (L = " + num(r.l()) +
                                 ", Lc = " + num(r.lc()) + " [InfoNCE of the embeddings], Lr = " + num(r.lr()) +
                                 " [restoration MSE])" + after);
  if (!std::isfinite(r.grad_norm))
    throw StepDiverged(step, "step " + std::to_string(step) + ": the gradient norm is not finite" + after);
}

// Adam with the clip factor computed on the device, then the gradients dropped: a non-log step's update.
void PretrainStep::update(const Tensor& sum) {
  if (s_.clip > 0) adam_.step(clip_scale(sum));
  else adam_.step(1.0);
  adam_.zero_grad();
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
    update(sum);
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
