// End-to-end parity: one pretraining step of a small models::Pretrainer (every primitive, through autograd
// and the modules; models::PretrainStep, the step ./pretrain runs) on CUDA against the same step on the CPU - loss
// terms, every parameter gradient, the BatchNorm running statistics, the gradient norm and the parameters after one
// clipped Adam step. Both models are built from the same seed on the CPU; one is moved to CUDA. float64 makes the
// comparison tight (every difference is summation order); float32 is checked against the largest gradient.
#include <algorithm>
#include <cmath>
#include <memory>

#include "models/pretrain_step.h"
#include "tests/cuda/parity.h"
#include "tests/tiny_pretraining.h"

namespace hdssl::test {
namespace {

struct StepResult {
  double loss = 0, lc = 0, lr = 0, grad_norm = 0;
  std::vector<std::pair<std::string, std::vector<double>>> grads, params_after, buffers_after;
};

StepResult run_step(Device d, DType t) {
  const std::unique_ptr<models::Pretrainer> owned = tiny_pretrainer(t, d);
  models::Pretrainer& model = *owned;
  Rng data(7);
  const models::PretrainInputs in =
      map_inputs(tiny_pretrain_batch(data, t, 24), [&](const Tensor& x) { return on(d, x); });

  StepResult r;
  models::PretrainStep step(model);  // lr 3e-4, clip 1.0
  models::StepResult s = step.compute_gradients(in);
  r.loss = s.l();
  r.lc = s.lc();
  r.lr = s.lr();
  for (auto& [name, v] : model.named_parameters())
    r.grads.emplace_back(name, v.grad().defined() ? host_doubles(v.grad()) : std::vector<double>{});
  for (auto& [name, b] : model.named_buffers())
    if (b.tensor) r.buffers_after.emplace_back(name, host_doubles(*b.tensor));
  step.apply(s, 1);
  r.grad_norm = s.grad_norm;
  for (auto& [name, v] : model.named_parameters()) r.params_after.emplace_back(name, host_doubles(v.value()));
  return r;
}

// Per named tensor: max |cpu - cuda| <= atol + rel * max |cpu|.
void expect_lists_close(const std::vector<std::pair<std::string, std::vector<double>>>& cpu,
                        const std::vector<std::pair<std::string, std::vector<double>>>& gpu, double rel,
                        double atol, const std::string& what) {
  ASSERT_EQ(cpu.size(), gpu.size()) << what;
  for (size_t k = 0; k < cpu.size(); ++k) {
    ASSERT_EQ(cpu[k].first, gpu[k].first) << what;
    ASSERT_EQ(cpu[k].second.size(), gpu[k].second.size()) << what << " " << cpu[k].first;
    double diff = 0, mag = 0;
    for (size_t i = 0; i < cpu[k].second.size(); ++i) {
      diff = std::max(diff, std::fabs(cpu[k].second[i] - gpu[k].second[i]));
      mag = std::max(mag, std::fabs(cpu[k].second[i]));
    }
    EXPECT_LE(diff, atol + rel * mag) << what << " " << cpu[k].first << ": max |cpu - cuda| " << diff
                                         << ", max |cpu| " << mag;
  }
}

TEST(CudaPretrainStep, LossGradientsBuffersAndAdamMatchTheCpu) {
  HDSSL_REQUIRE_CUDA();
  for (DType t : kFloatTypes) {
    const StepResult c = run_step(Device::cpu(), t), g = run_step(gpu(), t);
    const double rel = t == DType::F64 ? 1e-9 : 2e-4;  // float32: summation order over ~10^4 terms
    EXPECT_NEAR(g.loss, c.loss, rel * std::fabs(c.loss)) << dtype_name(t);
    EXPECT_NEAR(g.lc, c.lc, rel * std::fabs(c.lc)) << dtype_name(t);
    EXPECT_NEAR(g.lr, c.lr, rel * std::fabs(c.lr) + 1e-12) << dtype_name(t);
    EXPECT_NEAR(g.grad_norm, c.grad_norm, rel * c.grad_norm) << dtype_name(t);
    double global = 0;  // the largest gradient element anywhere: the scale for small gradients
    for (auto& [n, v] : c.grads)
      for (double x : v) global = std::max(global, std::fabs(x));
    expect_lists_close(c.grads, g.grads, rel, rel * 1e-3 * global, std::string("gradient (") + dtype_name(t) + ")");
    expect_lists_close(c.buffers_after, g.buffers_after, rel, rel * 1e-6,
                       std::string("buffer (") + dtype_name(t) + ")");
    // Adam's first step moves each weight by about lr * sign(g): where the true gradient is zero (a conv bias
    // right before a BatchNorm) float32 rounding noise picks the sign, so float32 allows 2 lr there.
    const double adam_atol = t == DType::F64 ? 1e-12 : 2 * AdamArgs{}.lr;
    expect_lists_close(c.params_after, g.params_after, rel, adam_atol,
                       std::string("after Adam (") + dtype_name(t) + ")");
  }
}

}  // namespace
}  // namespace hdssl::test
