// The first training step of a tiny network (base 2, 3 scales, odd patch 10x9x6 so ceil-mode pooling and
// the decoder's crop are exercised) against PyTorch: the same weights (loaded by name from the fixture,
// written by tests/reference/make_fixture_pretrain_step.py with Debian's torch 1.13) and the same inputs
// must give the same loss terms, every parameter gradient, the BatchNorm running statistics, and the
// parameters after one clipped Adam step, all in float64. The step is models::PretrainStep, the one
// ./pretrain and ./bench run; the tests at the end check its hooks (gradient reducer, clipping switch)
// and its refusal of non-finite values.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "autograd/optim.h"
#include "models/checkpoint.h"
#include "engine/batch_uploader.h"
#include "models/pretrain_step.h"
#include "models/upload_inputs.h"

using namespace hdssl;
using namespace hdssl::models;

namespace {
const std::string kFixtures = HDSSL_SOURCE_DIR "/tests/reference/fixtures/";

// max |a - b| / max(floor, max |b|): the error relative to the tensor's scale. `floor` matters only for
// gradients that are zero in exact arithmetic (the bias of a conv followed by a training-mode BatchNorm,
// whose batch mean removes it): there both sides hold rounding noise of the size eps * |gradients|.
double rel_diff(const std::vector<double>& a, const std::vector<double>& b, double floor = 1e-300) {
  double num = 0, den = floor;
  for (size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, std::abs(a[i] - b[i]));
    den = std::max(den, std::abs(b[i]));
  }
  return num / den;
}
std::vector<double> values(const SafeTensors& fx, const std::string& name) {
  const StoredTensor* s = fx.find(name);
  if (!s) throw Error("fixture lacks " + name);
  return to_tensor(*s, DType::F64, Device::cpu()).to_vector<double>();
}

struct Fixture {
  SafeTensors fx;
  PretrainConfig cfg;
  std::unique_ptr<Pretrainer> model;
  PretrainInputs in;
  explicit Fixture(const std::string& file) : fx(read_safetensors(kFixtures + file)) {
    cfg.base = std::stoi(fx.metadata.at("base"));
    cfg.scales = std::stoi(fx.metadata.at("scales"));
    cfg.proj_width = std::stoi(fx.metadata.at("proj_width"));
    cfg.balanced = fx.metadata.at("balanced") == "1";
    cfg.restoration_single_conv = fx.metadata.at("restoration_1x1") == "1";
    cfg.tau = std::stod(fx.metadata.at("tau"));
    cfg.lambda = std::stod(fx.metadata.at("lambda"));
    Rng rng(123);
    model = std::make_unique<Pretrainer>(cfg, rng, ModuleOptions{DType::F64, Device::cpu()});
    load_module_state(*model, fx, "init.", true);
    auto t = [&](const char* n, DType d) { return to_tensor(*fx.find(std::string("input.") + n), d, Device::cpu()); };
    in = {t("view_a", DType::F64), t("view_b", DType::F64), t("target_a", DType::F64), t("target_b", DType::F64),
          t("coords_a", DType::I32), t("coords_b", DType::I32)};
  }
};
}  // namespace

class PretrainFixture : public ::testing::TestWithParam<std::string> {};

// "ours" (balanced projections, two-layer restoration, tau 0.1, lambda 10) and vox2vec's raw concat with
// the single 1x1x1 restoration conv (tau 0.2, lambda 3).
INSTANTIATE_TEST_SUITE_P(Architectures, PretrainFixture,
                         ::testing::Values("pretrain_step_tiny.safetensors", "pretrain_step_tiny_vox2vec.safetensors"));

TEST_P(PretrainFixture, FirstStepLossGradientsAndAdamMatchPyTorch) {
  Fixture f(GetParam());
  // PyTorch's step: clip_grad_norm_(1.0), then Adam with lr 3e-4 (StepSettings' defaults).
  PretrainStep step(*f.model);
  StepResult r = step.compute_gradients(f.in);
  const double loss = r.l(), lc = r.lc(), lr = r.lr();
  std::printf("loss %.15g (torch %.15g)  Lc %.15g (torch %.15g)  Lr %.15g (torch %.15g)\n", loss,
              values(f.fx, "out.loss")[0], lc, values(f.fx, "out.lc")[0], lr, values(f.fx, "out.lr")[0]);
  EXPECT_NEAR(loss, values(f.fx, "out.loss")[0], 1e-9 * std::abs(loss));
  EXPECT_NEAR(lc, values(f.fx, "out.lc")[0], 1e-9 * std::abs(lc));
  EXPECT_NEAR(lr, values(f.fx, "out.lr")[0], 1e-9 * std::abs(lr));

  double global = 0;  // the largest gradient element of the whole network (PyTorch's)
  for (auto& [name, v] : f.model->named_parameters())
    for (double g : values(f.fx, "grad." + name)) global = std::max(global, std::abs(g));
  double worst = 0;
  std::string worst_name;
  int checked = 0;
  for (auto& [name, v] : f.model->named_parameters()) {
    ASSERT_TRUE(v.grad().defined()) << name << " got no gradient";
    double d = rel_diff(v.grad().to_vector<double>(), values(f.fx, "grad." + name), 1e-5 * global);
    EXPECT_LT(d, 1e-9) << "gradient of " << name;
    if (d > worst) { worst = d; worst_name = name; }
    ++checked;
  }
  std::printf("%d parameter gradients, worst relative difference %.3g (%s)\n", checked, worst, worst_name.c_str());
  for (auto& [name, b] : f.model->named_buffers()) {
    if (!b.tensor) {
      EXPECT_EQ(*b.counter, int64_t(values(f.fx, "after." + name)[0])) << name;
      continue;
    }
    EXPECT_LT(rel_diff(b.tensor->to_vector<double>(), values(f.fx, "after." + name)), 1e-9) << name;
  }

  // The rest of the step: the norm (before clipping), clipping to 1.0, Adam, zero_grad.
  step.apply(r, 1);
  EXPECT_NEAR(r.grad_norm, values(f.fx, "out.grad_norm")[0], 1e-9 * r.grad_norm);
  for (auto& [name, v] : f.model->named_parameters()) {
    EXPECT_LT(rel_diff(v.value().to_vector<double>(), values(f.fx, "step1." + name)), 1e-9) << "after Adam: " << name;
    EXPECT_FALSE(v.grad().defined()) << name << ": gradients are dropped after the step";
  }
}

// run() is compute_gradients() + apply(), and equals the sequence ./pretrain ran before PretrainStep
// existed (loss, backward, grad_norm, Adam::step(clip_coefficient(norm, 1)), zero_grad), bit for bit.
TEST(PretrainStep, RunEqualsTheHandWrittenSequence) {
  Fixture a("pretrain_step_tiny.safetensors"), b("pretrain_step_tiny.safetensors");
  PretrainStep step(*a.model);
  StepResult r = step.run(a.in, 1);

  PretrainLoss l = b.model->loss(b.in);
  const double total = l.total.value().item();
  l.total.backward();
  l = {};
  std::vector<Variable> params = b.model->parameters();
  Adam adam(params);
  const double gn = grad_norm(params);
  adam.step(clip_coefficient(gn, 1.0));
  adam.zero_grad();

  EXPECT_EQ(r.l(), total);
  EXPECT_EQ(r.grad_norm, gn);
  auto pa = a.model->named_parameters(), pb = b.model->named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i)
    EXPECT_EQ(pa[i].second.value().to_vector<double>(), pb[i].second.value().to_vector<double>()) << pa[i].first;
}

// The reducer runs once per step, after the backward pass and before the norm: a reducer that doubles
// every gradient doubles the reported norm.
TEST(PretrainStep, GradientReducerRunsBetweenBackwardAndTheNorm) {
  struct Doubler : GradientReducer {
    int calls = 0;
    void reduce(const std::vector<Variable>& params) override {
      ++calls;
      for (Variable p : params)
        if (p.grad().defined()) p.grad() = doubled(p.grad());
    }
    static Tensor doubled(const Tensor& g) {
      std::vector<double> v = g.to_vector<double>();
      for (double& x : v) x *= 2;
      return Tensor::from_vector(v, g.shape(), g.device());
    }
  };
  Fixture a("pretrain_step_tiny.safetensors"), b("pretrain_step_tiny.safetensors");
  Doubler twice;
  PretrainStep plain(*a.model), doubled(*b.model, StepSettings{}, &twice);
  StepResult ra = plain.run(a.in, 1), rb = doubled.run(b.in, 1);
  EXPECT_EQ(twice.calls, 1);
  EXPECT_NEAR(rb.grad_norm, 2 * ra.grad_norm, 1e-12 * ra.grad_norm);
}

// --clip 0 turns clipping off: Adam sees the raw gradients (coefficient 1 whatever the norm).
TEST(PretrainStep, ClipZeroMeansNoClipping) {
  Fixture f("pretrain_step_tiny.safetensors");
  StepSettings off;
  off.clip = 0;
  PretrainStep on_step(*f.model), off_step(*f.model, off);
  EXPECT_EQ(off_step.clip_coefficient(1e6), 1.0);
  EXPECT_EQ(on_step.clip_coefficient(1e6), clip_coefficient(1e6, 1.0));
  EXPECT_EQ(on_step.clip_coefficient(0.5), 1.0);
}

// A NaN in the batch stops the step before Adam, naming the step and the loss term or the parameter.
TEST(PretrainStep, NonFiniteValuesThrowStepDivergedNamingTheStep) {
  Fixture f("pretrain_step_tiny.safetensors");
  std::vector<std::vector<double>> before;
  for (auto& [name, v] : f.model->named_parameters()) before.push_back(v.value().to_vector<double>());
  f.in.view_a = Tensor::full(f.in.view_a.shape(), NAN, DType::F64, Device::cpu());
  PretrainStep step(*f.model);
  try {
    step.run(f.in, 7);
    FAIL() << "a NaN batch went through";
  } catch (const StepDiverged& e) {
    EXPECT_EQ(e.step, 7);
    const std::string m = e.what();
    EXPECT_NE(m.find("step 7: the"), std::string::npos) << m;
    EXPECT_NE(m.find("is not finite"), std::string::npos) << m;
  }
  size_t i = 0;
  for (auto& [name, v] : f.model->named_parameters())
    EXPECT_EQ(v.value().to_vector<double>(), before[i++]) << name << " changed by a refused step";
}

// Between log steps a step reads nothing back: no device -> host copy, no item(), no synchronize (counted
// by the engine, engine/backend.h: host_sync_count(); on the CPU backend the reads of CPU tensors that
// stand in for those copies are counted). A log step reads the norm and the loss terms. The batch comes
// through the uploader as in ./pretrain (engine/batch_uploader.h: take batch k, put batch k+1, run step k),
// which is counted as part of the step.
TEST(PretrainStep, NoHostSyncInsideAStepBetweenLogSteps) {
  Fixture f("pretrain_step_tiny.safetensors");
  StepSettings s;
  s.log_every = 3;
  PretrainStep step(*f.model, s);
  auto uploader = make_batch_uploader(Device::cpu());
  uploader->put(input_tensors(f.in));
  for (int64_t k = 1; k <= 6; ++k) {
    const uint64_t before = host_sync_count();
    const PretrainInputs in = inputs_from_tensors(uploader->take());
    uploader->put(input_tensors(f.in));
    StepResult r = step.run(in, k);
    const uint64_t syncs = host_sync_count() - before;
    if (k % 3 == 0) {
      EXPECT_TRUE(r.checked) << "step " << k;
      EXPECT_GE(syncs, 1u) << "step " << k << " is a log step: it reads the norm and the loss";
    } else {
      EXPECT_FALSE(r.checked) << "step " << k;
      EXPECT_EQ(syncs, 0u) << "step " << k << " is not a log step";
    }
  }
  // The step keeps no handle of its batch: every copy after the first two could overlap the step before.
  EXPECT_EQ(uploader->stats().serialized, 2);
  EXPECT_EQ(uploader->stats().allocations, 2 * 6);
  // The counter counts what it should: one item() is one sync.
  const uint64_t before = host_sync_count();
  (void)Tensor::zeros({1}, DType::F64).item();
  EXPECT_EQ(host_sync_count() - before, 1u);
}

// The log steps change no value: parameters and Adam's state after 5 steps are the same, bit for bit,
// whether every step is checked or every third one (the clip factor is computed on the device either way).
TEST(PretrainStep, LogEveryChangesNoValue) {
  Fixture a("pretrain_step_tiny.safetensors"), b("pretrain_step_tiny.safetensors");
  StepSettings every, third;
  third.log_every = 3;
  PretrainStep sa(*a.model, every), sb(*b.model, third);
  StepResult ra, rb;
  for (int64_t k = 1; k <= 5; ++k) {
    ra = sa.run(a.in, k);
    rb = sb.run(b.in, k);
    if (k == 3) EXPECT_EQ(ra.grad_norm, rb.grad_norm);
  }
  EXPECT_EQ(ra.l(), rb.l());  // the loss terms stay readable (lazily) at a step that was not a log step
  EXPECT_EQ(ra.grad_sum_squares.get(), rb.grad_sum_squares.get());
  auto pa = a.model->named_parameters(), pb = b.model->named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i)
    EXPECT_EQ(pa[i].second.value().to_vector<double>(), pb[i].second.value().to_vector<double>()) << pa[i].first;
  for (size_t i = 0; i < sa.optimizer().exp_avg_sq().size(); ++i)
    EXPECT_EQ(sa.optimizer().exp_avg_sq()[i].to_vector<double>(), sb.optimizer().exp_avg_sq()[i].to_vector<double>());
}

// A NaN between log steps goes unseen until the next log step (up to log_every - 1 steps run on it),
// which throws naming itself; run(.., check = true) makes any step a log step.
TEST(PretrainStep, NonFiniteBetweenLogStepsIsCaughtAtTheNextLogStep) {
  Fixture f("pretrain_step_tiny.safetensors"), g("pretrain_step_tiny.safetensors");
  StepSettings s;
  s.log_every = 3;
  PretrainInputs poisoned = f.in;
  poisoned.view_a = Tensor::full(f.in.view_a.shape(), NAN, DType::F64, Device::cpu());
  PretrainStep step(*f.model, s);
  EXPECT_NO_THROW(step.run(poisoned, 1));  // not a log step: unseen
  EXPECT_NO_THROW(step.run(f.in, 2));
  EXPECT_THROW(step.run(f.in, 3), StepDiverged);

  PretrainStep forced(*g.model, s);
  try {
    forced.run(poisoned, 1, /*check=*/true);
    FAIL() << "a checked NaN step went through";
  } catch (const StepDiverged& e) {
    EXPECT_EQ(e.step, 1);
  }
}
