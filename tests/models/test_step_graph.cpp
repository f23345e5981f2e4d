// The captured pretraining step (--cuda-graph; engine/step_graph.h, models/pretrain_step.h) on the CPU,
// where the capture is the recorder: replaying the captured step N times must give, bit for bit, what N
// eager steps give (parameters, Adam's moments and step counts, BatchNorm's running statistics and
// counters, every step's loss terms and gradient norm), with a new batch each step. It fails when a value
// that changes from step to step reaches a kernel as a host argument (Adam's step number was one: the
// capture froze it), when a host counter is not advanced by the replay, or when an input is not copied
// into the captured tensors. Then the refusals: a host read inside a capture, an all-reduce, changed
// batch shapes, a changed learning rate.
#include <gtest/gtest.h>

#include <cstring>

#include "autograd/optim.h"
#include "engine/backend.h"
#include "engine/profile.h"
#include "engine/step_graph.h"
#include "models/pretrain_step.h"
#include "tests/tiny_pretraining.h"

using namespace hdssl;
using namespace hdssl::models;

namespace {

// A tiny float64 pretrainer (base 2, 3 scales, odd patch, restoration on) and a batch that differs by step.
struct TinyModel {
  PretrainConfig cfg;
  std::unique_ptr<Pretrainer> model;
  explicit TinyModel(bool restoration = true) {
    cfg.restoration = restoration;
    cfg.base = 2;
    cfg.scales = 3;
    cfg.proj_width = 4;
    cfg.embed_dim = 8;
    cfg.blocks = 1;
    Rng rng(7);
    model = std::make_unique<Pretrainer>(cfg, rng, ModuleOptions{DType::F64, Device::cpu()});
  }
};

PretrainInputs batch(int64_t k) {
  const int64_t B = 2, n = 5, X = 10, Y = 9, Z = 6;
  Rng rng(uint64_t(1000 + k));
  auto vol = [&] {
    std::vector<double> v(size_t(B * X * Y * Z));
    for (double& x : v) x = rng.uniform() * 2 - 1;
    return Tensor::from_vector(v, {B, 1, X, Y, Z});
  };
  auto coords = [&] {
    std::vector<int32_t> c(size_t(B * n * 3));
    for (size_t i = 0; i < c.size(); i += 3) {
      c[i] = int32_t(rng.uniform() * X);
      c[i + 1] = int32_t(rng.uniform() * Y);
      c[i + 2] = int32_t(rng.uniform() * Z);
    }
    return Tensor::from_vector(c, {B, n, 3});
  };
  return hdssl::test::draw_pretrain_inputs(vol, coords);
}

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  return std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// A captured step after `warmup` eager steps, with a log step every `log_every` steps.
StepSettings captured_settings(int64_t warmup, int64_t log_every) {
  StepSettings s;
  s.log_every = log_every;
  s.graph = true;
  s.graph_warmup = warmup;
  return s;
}

struct Trace {
  std::vector<double> lc, lr, l, sum;
};

// Runs `steps` steps and records each step's terms (read after the step, as ./pretrain's log steps do).
Trace train(Pretrainer& model, PretrainStep& step, int64_t steps) {
  (void)model;
  Trace t;
  for (int64_t k = 1; k <= steps; ++k) {
    StepResult r = step.run(batch(k), k);
    t.lc.push_back(r.lc());
    t.lr.push_back(r.lr());
    t.l.push_back(r.l());
    t.sum.push_back(r.grad_sum_squares.get());
  }
  return t;
}

void expect_same_state(Pretrainer& a, PretrainStep& sa, Pretrainer& b, PretrainStep& sb) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i)
    EXPECT_TRUE(same_bits(pa[i].second.value(), pb[i].second.value())) << "parameter " << pa[i].first;
  auto ba = a.named_buffers(), bb = b.named_buffers();
  ASSERT_EQ(ba.size(), bb.size());
  for (size_t i = 0; i < ba.size(); ++i) {
    if (ba[i].second.tensor) EXPECT_TRUE(same_bits(*ba[i].second.tensor, *bb[i].second.tensor)) << ba[i].first;
    else EXPECT_EQ(*ba[i].second.counter, *bb[i].second.counter) << "counter " << ba[i].first;
  }
  const Adam &A = sa.optimizer(), &Bo = sb.optimizer();
  EXPECT_EQ(A.step_count(), Bo.step_count());
  EXPECT_EQ(A.param_steps(), Bo.param_steps());
  for (size_t i = 0; i < A.exp_avg().size(); ++i) {
    EXPECT_TRUE(same_bits(A.exp_avg()[i], Bo.exp_avg()[i])) << "exp_avg " << i;
    EXPECT_TRUE(same_bits(A.exp_avg_sq()[i], Bo.exp_avg_sq()[i])) << "exp_avg_sq " << i;
  }
}

}  // namespace

// Warm-up 2, capture at step 3, replays for steps 3..8; log steps (every 4th) are replayed and checked too.
TEST(StepGraph, ReplayingTheCapturedStepEqualsEagerStepsBitForBit) {
  TinyModel e, g;
  StepSettings eager_s, graph_s;
  eager_s.log_every = graph_s.log_every = 4;
  graph_s.graph = true;
  graph_s.graph_warmup = 2;
  PretrainStep eager(*e.model, eager_s), graphed(*g.model, graph_s);
  const int64_t steps = 8;
  const Trace te = train(*e.model, eager, steps), tg = train(*g.model, graphed, steps);
  EXPECT_FALSE(eager.captured());
  ASSERT_TRUE(graphed.captured());
  EXPECT_GT(graphed.captured_calls(), 100u);
  for (int64_t k = 0; k < steps; ++k) {
    EXPECT_EQ(std::memcmp(&te.l[k], &tg.l[k], sizeof(double)), 0) << "L of step " << k + 1;
    EXPECT_EQ(std::memcmp(&te.lc[k], &tg.lc[k], sizeof(double)), 0) << "Lc of step " << k + 1;
    EXPECT_EQ(std::memcmp(&te.lr[k], &tg.lr[k], sizeof(double)), 0) << "Lr of step " << k + 1;
    EXPECT_EQ(std::memcmp(&te.sum[k], &tg.sum[k], sizeof(double)), 0) << "sum of squared gradients, step " << k + 1;
  }
  // The batches differ, so the terms do: the replays read each step's batch, not the captured one.
  EXPECT_NE(tg.l[steps - 1], tg.l[steps - 2]);
  expect_same_state(*e.model, eager, *g.model, graphed);
  EXPECT_EQ(graphed.optimizer().step_count(), steps);
}

// An eager step after replays (a resumed run, a caller that drops the graph) continues from the device's
// step counts: the host and device bookkeeping stayed in step.
TEST(StepGraph, CheckpointCountsFollowTheReplays) {
  TinyModel g;
  const StepSettings s = captured_settings(1, 100);
  PretrainStep graphed(*g.model, s);
  (void)train(*g.model, graphed, 5);
  for (int64_t c : graphed.optimizer().param_steps()) EXPECT_EQ(c, 5);
  for (auto& [name, b] : g.model->named_buffers())
    if (b.counter) EXPECT_EQ(*b.counter, 2 * 5) << name << " (two views per step)";
}

// Without restoration (vox2vec's configuration) the batch has no targets: the capture keeps them absent.
TEST(StepGraph, WithoutRestorationAndTargetsToo) {
  TinyModel e(false), g(false);
  StepSettings es, gs;
  es.log_every = gs.log_every = 2;
  gs.graph = true;
  gs.graph_warmup = 1;
  PretrainStep eager(*e.model, es), graphed(*g.model, gs);
  for (int64_t k = 1; k <= 4; ++k) {
    PretrainInputs in = batch(k);
    in.target_a = in.target_b = Tensor();
    const double le = eager.run(in, k).l(), lg = graphed.run(in, k).l();
    EXPECT_EQ(std::memcmp(&le, &lg, sizeof le), 0) << "L of step " << k;
  }
  ASSERT_TRUE(graphed.captured());
  expect_same_state(*e.model, eager, *g.model, graphed);
}

TEST(StepGraph, HostReadInsideACaptureThrowsNamingTheCall) {
  Tensor t = Tensor::zeros({1}, DType::F64);
  {
    CaptureGuard capture(Device::cpu());
    try {
      (void)t.item();
      FAIL() << "item() inside a capture did not throw";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("host read inside a captured step"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("item()"), std::string::npos) << e.what();
    }
    EXPECT_THROW(backend(Device::cpu()).synchronize(), Error);
    EXPECT_THROW(Tensor::from_vector(std::vector<double>{1.0}, {1}), Error);  // a host write
    EXPECT_THROW(begin_capture(Device::cpu()), Error);                         // one capture per thread
  }
  EXPECT_FALSE(capturing());
  EXPECT_EQ(t.item(), 0.0);  // the guard closed the capture: reads work again
}

// The recorder runs nothing while capturing and everything at each replay, in order.
TEST(StepGraph, RecorderRunsNothingAtCaptureAndEverythingAtReplay) {
  Tensor x = Tensor::full({4}, 1.0, DType::F64), y = Tensor::zeros({4}, DType::F64);
  std::unique_ptr<StepGraph> g;
  {
    CaptureGuard capture(Device::cpu());
    backend(Device::cpu()).axpby(1.0, x, 1.0, y, y);  // y += x
    Tensor tmp = Tensor::empty({4}, DType::F64);      // allocated now, kept by the recording
    backend(Device::cpu()).fill(tmp, 2.0);
    backend(Device::cpu()).axpby(1.0, tmp, 1.0, y, y);  // y += 2
    g = capture.end();
  }
  EXPECT_EQ(g->nodes(), 3u);
  EXPECT_EQ(y.to_vector<double>(), std::vector<double>(4, 0.0));
  g->replay();
  g->replay();
  EXPECT_EQ(y.to_vector<double>(), std::vector<double>(4, 6.0));
}

// backend(cpu) hands out a profiling wrapper while the profile is on (engine/profile.h): switching it
// during a capture must not let a call run unrecorded.
TEST(StepGraph, EveryBackendOfTheDeviceIsRecorded) {
  Tensor y = Tensor::zeros({3}, DType::F64);
  const bool was = profile::enabled();
  std::unique_ptr<StepGraph> g;
  {
    CaptureGuard capture(Device::cpu());
    profile::enable(!was);
    backend(Device::cpu()).fill(y, 5.0);
    profile::enable(was);
    g = capture.end();
  }
  EXPECT_EQ(y.to_vector<double>(), std::vector<double>(3, 0.0)) << "a call ran during the capture";
  g->replay();
  EXPECT_EQ(y.to_vector<double>(), std::vector<double>(3, 5.0));
}

TEST(StepGraph, RefusedWithAGradientReducer) {
  struct Nop : GradientReducer {
    void reduce(const std::vector<Variable>&) override {}
  } nop;
  TinyModel g;
  StepSettings s;
  s.graph = true;
  try {
    PretrainStep step(*g.model, s, &nop);
    FAIL() << "a captured step with a gradient reducer was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--cuda-graph"), std::string::npos) << e.what();
  }
  // The negatives gather (also MPI) is refused at the capture.
  s.graph_warmup = 0;
  PretrainStep step(*g.model, s);
  g.model->set_negatives_gather([](const Variable& v) { return v; });
  EXPECT_THROW(step.run(batch(1), 1), Error);
  EXPECT_FALSE(capturing());
}

TEST(StepGraph, RefusesChangedShapesAndLearningRate) {
  TinyModel g;
  const StepSettings s = captured_settings(0, 100);
  PretrainStep step(*g.model, s);
  (void)step.run(batch(1), 1);
  ASSERT_TRUE(step.captured());
  PretrainInputs other = batch(2);
  other.coords_a = Tensor::zeros({2, 4, 3}, DType::I32);
  try {
    (void)step.run(other, 2);
    FAIL() << "a batch of other shapes was replayed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("coords_a"), std::string::npos) << e.what();
  }
  EXPECT_THROW(step.set_lr(1e-3), Error);
  step.set_lr(s.lr);  // the same value is fine
}

// A gradient left from an earlier call would be accumulated into, in place, by every replay of the captured
// backward (each replayed step would see the sum of all steps so far): the capture refuses it, names the
// parameter, leaves no capture open and changes nothing; once the gradients are dropped it captures, and
// the replays equal eager steps.
TEST(StepGraph, RefusesALeftoverGradient) {
  TinyModel g, e;
  const StepSettings s = captured_settings(0, 100);
  PretrainStep step(*g.model, s);
  (void)step.compute_gradients(batch(1));  // gradients now defined, no step taken
  try {
    (void)step.run(batch(1), 1);
    FAIL() << "a step was captured on top of a leftover gradient";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("still has a gradient"), std::string::npos) << err.what();
  }
  EXPECT_FALSE(capturing());
  EXPECT_FALSE(step.captured());
  EXPECT_EQ(step.optimizer().step_count(), 0);
  step.optimizer().zero_grad();
  StepSettings es = s;
  es.graph = false;
  PretrainStep eager(*e.model, es);
  (void)eager.compute_gradients(batch(1));  // the same forward (BatchNorm's statistics), gradients dropped
  eager.optimizer().zero_grad();
  for (int64_t k = 1; k <= 3; ++k) {
    const double lg = step.run(batch(k), k).l(), le = eager.run(batch(k), k).l();
    EXPECT_EQ(std::memcmp(&le, &lg, sizeof le), 0) << "L of step " << k;
  }
  ASSERT_TRUE(step.captured());
  expect_same_state(*e.model, eager, *g.model, step);
}
