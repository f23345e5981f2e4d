// Segmentation heads and the downstream trainer: shapes and names, the linear probe equals "upsample
// every level and sum", the linear probe leaves every backbone weight unchanged, the fine-tuning
// schedule, and bit-exact resume from a checkpoint.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "autograd/functions.h"
#include "models/checkpoint.h"
#include "eval/sliding_window.h"
#include "eval/trainer.h"
#include "models/segmentation.h"

using namespace hdssl;
using namespace hdssl::models;
using namespace hdssl::eval;

static SegmenterConfig tiny(HeadKind head) {
  SegmenterConfig c;
  c.fpn.base = 4;
  c.fpn.scales = 3;
  c.fpn.blocks = 1;
  c.classes = 3;
  c.head = head;
  return c;
}

static Tensor random_tensor(const Shape& s, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(size_t(numel(s)));
  for (float& x : v) x = rng.uniformf();
  return Tensor::from_vector(v, s);
}

// A batch whose target has a learnable structure: class k is on where the image exceeds 0.25 * (k+1).
static PatchBatch toy_batch(uint64_t seed, int B = 2, int64_t n = 8) {
  PatchBatch b;
  b.image = random_tensor({B, 1, n, n, n}, seed);
  std::vector<float> img = b.image.to_vector<float>(), tgt;
  for (int i = 0; i < B; ++i)
    for (int k = 0; k < 3; ++k)
      for (int64_t v = 0; v < n * n * n; ++v)
        tgt.push_back(img[size_t(i * n * n * n + v)] > 0.25f * float(k + 1) ? 1.f : 0.f);
  b.target = Tensor::from_vector(tgt, {B, 3, n, n, n});
  return b;
}

static std::map<std::string, std::vector<float>> snapshot(const Module& m) {
  std::map<std::string, std::vector<float>> s;
  for (auto& [n, v] : m.named_parameters()) s[n] = v.value().to_vector<float>();
  for (auto& [n, b] : m.named_buffers())
    s[n] = b.tensor ? b.tensor->to_vector<float>() : std::vector<float>{float(*b.counter)};
  return s;
}

TEST(Segmentation, ShapesAndNames) {
  Rng rng(1);
  for (HeadKind h : {HeadKind::Linear, HeadKind::NonLinear}) {
    Segmenter m(tiny(h), rng);
    m.train(false);
    NoGradGuard g;
    Variable y = m.forward(random_tensor({2, 1, 9, 8, 5}, 2));  // odd sizes: ceil-mode levels, cropping
    EXPECT_EQ(y.shape(), (Shape{2, 3, 9, 8, 5}));
    std::map<std::string, Shape> names;
    for (auto& [n, v] : m.named_parameters()) names[n] = v.shape();
    EXPECT_TRUE(names.count("backbone.first_conv.weight"));
    if (h == HeadKind::Linear) {
      EXPECT_EQ(names.at("head.0.weight"), (Shape{3, 4, 1, 1, 1}));
      EXPECT_EQ(names.at("head.2.weight"), (Shape{3, 16, 1, 1, 1}));
      EXPECT_TRUE(names.count("head.0.bias"));
      EXPECT_FALSE(names.count("head.1.bias"));  // bias only at level 0
    } else {
      EXPECT_EQ(names.at("head.blocks.2.layers.2.weight"), (Shape{16, 16, 1, 1, 1}));
      EXPECT_EQ(names.at("head.ups.0.weight"), (Shape{4, 8, 1, 1, 1}));
      EXPECT_EQ(names.at("head.out.weight"), (Shape{3, 4, 1, 1, 1}));
    }
  }
}

TEST(Segmentation, LinearProbeIsTheSumOfUpsampledLevels) {
  Rng rng(3);
  FPN3dConfig fpn = tiny(HeadKind::Linear).fpn;
  LinearProbe probe(fpn, 2, rng);
  const int64_t X = 7, Y = 6, Z = 5;
  std::vector<Variable> pyr;
  for (int i = 0; i < fpn.scales; ++i) {
    const int64_t s = 1 << i;
    pyr.emplace_back(random_tensor({1, fpn.channels(i), (X + s - 1) / s, (Y + s - 1) / s, (Z + s - 1) / s}, 10 + i));
  }
  NoGradGuard g;
  std::vector<float> got = probe.forward(pyr).value().to_vector<float>();
  // Expected: for each level its 1x1x1 conv, read at floor(v / 2^i), summed over levels.
  auto named = probe.named_parameters();
  std::map<std::string, Variable> p(named.begin(), named.end());
  std::vector<double> want(size_t(2 * X * Y * Z), 0.0);
  for (int i = 0; i < fpn.scales; ++i) {
    std::vector<float> f = pyr[size_t(i)].value().to_vector<float>(),
                       w = p.at(std::to_string(i) + ".weight").value().to_vector<float>();
    const int64_t C = fpn.channels(i), s = 1 << i, fy = pyr[size_t(i)].size(3), fz = pyr[size_t(i)].size(4),
                  fx = pyr[size_t(i)].size(2);
    for (int k = 0; k < 2; ++k)
      for (int64_t x = 0; x < X; ++x)
        for (int64_t y = 0; y < Y; ++y)
          for (int64_t z = 0; z < Z; ++z) {
            double acc = (i == 0) ? p.at("0.bias").value().to_vector<float>()[size_t(k)] : 0.0;
            for (int64_t c = 0; c < C; ++c)
              acc += double(w[size_t(k * C + c)]) * f[size_t(((c * fx + x / s) * fy + y / s) * fz + z / s)];
            want[size_t(((k * X + x) * Y + y) * Z + z)] += acc;
          }
  }
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-5) << i;
}

TEST(Segmentation, LinearProbeLeavesEveryBackboneWeightUnchanged) {
  Rng rng(4);
  Segmenter m(tiny(HeadKind::Linear), rng);
  TrainConfig c;
  c.mode = Mode::Linear;
  c.lr = 1e-2;
  Trainer t(m, c, Device::cpu());
  auto before = snapshot(m);
  for (int s = 0; s < 3; ++s) t.step(toy_batch(100 + s), s);
  auto after = snapshot(m);
  int head_changed = 0;
  for (auto& [name, v] : before) {
    if (name.rfind("backbone.", 0) == 0) EXPECT_EQ(v, after.at(name)) << name << " changed during linear probing";
    else head_changed += v != after.at(name);
  }
  EXPECT_EQ(head_changed, 4) << "every head tensor (3 weights, 1 bias) should move";
  for (const Variable& p : m.backbone_parameters()) EXPECT_FALSE(p.grad().defined()) << p.name();
}

TEST(Segmentation, HeadLearnsAToyTask) {
  Rng rng(5);
  Segmenter m(tiny(HeadKind::Linear), rng);
  TrainConfig c;
  c.mode = Mode::Linear;
  c.lr = 3e-2;
  Trainer t(m, c, Device::cpu());
  PatchBatch b = toy_batch(7);
  double first = t.step(b, 0).loss, last = 0;
  for (int s = 1; s < 150; ++s) last = t.step(b, s).loss;
  EXPECT_LT(last, 0.8 * first) << "first " << first << " last " << last;
}

TEST(Trainer, FineTuneScheduleAndModes) {
  TrainConfig c;
  c.mode = Mode::Finetune;
  c.freeze_steps = 10;
  c.warmup_steps = 12;
  EXPECT_TRUE(backbone_frozen_at(c, 9));
  EXPECT_EQ(backbone_lr_at(c, 9), 0.0);
  EXPECT_FALSE(backbone_frozen_at(c, 10));
  EXPECT_NEAR(backbone_lr_at(c, 10), 3e-5, 1e-15);
  EXPECT_NEAR(backbone_lr_at(c, 16), 3e-5 * std::sqrt(10.0), 1e-12);
  EXPECT_NEAR(backbone_lr_at(c, 22), 3e-4, 1e-15);
  EXPECT_NEAR(backbone_lr_at(c, 1000), 3e-4, 1e-15);
  c.mode = Mode::Scratch;
  EXPECT_FALSE(backbone_frozen_at(c, 0));
  EXPECT_EQ(backbone_lr_at(c, 0), 3e-4);
  c.mode = Mode::NonLinear;
  EXPECT_TRUE(backbone_frozen_at(c, 1000000));
  EXPECT_EQ(parse_mode("probing"), Mode::Linear);
  EXPECT_EQ(parse_mode("fine_tuning"), Mode::Finetune);
  EXPECT_EQ(parse_mode("from_scratch"), Mode::Scratch);
  EXPECT_THROW(parse_mode("linaer"), Error);
}

TEST(Trainer, FineTuneUnfreezesTheBackboneAfterFreezeSteps) {
  Rng rng(6);
  Segmenter m(tiny(HeadKind::NonLinear), rng);
  TrainConfig c;
  c.mode = Mode::Finetune;
  c.freeze_steps = 2;
  c.warmup_steps = 2;
  Trainer t(m, c, Device::cpu());
  auto w0 = m.backbone().named_parameters()[0].second.value().to_vector<float>();
  t.step(toy_batch(1), 0);
  t.step(toy_batch(2), 1);
  EXPECT_EQ(m.backbone().named_parameters()[0].second.value().to_vector<float>(), w0);
  t.step(toy_batch(3), 2);
  EXPECT_NE(m.backbone().named_parameters()[0].second.value().to_vector<float>(), w0);
}

TEST(Trainer, ResumeFromCheckpointIsBitExact) {
  const std::string path = ::testing::TempDir() + "seg_ckpt.safetensors";
  TrainConfig c;
  c.mode = Mode::Finetune;
  c.freeze_steps = 1;
  c.warmup_steps = 3;
  Rng r1(8);
  Segmenter a(tiny(HeadKind::NonLinear), r1);
  Trainer ta(a, c, Device::cpu());
  ta.step(toy_batch(1), 0);
  ta.step(toy_batch(2), 1);
  ta.save(path, 2, {{"note", "test"}});
  Rng r2(99);  // different init: everything must come from the file
  Segmenter b(tiny(HeadKind::NonLinear), r2);
  Trainer tb(b, c, Device::cpu());
  EXPECT_EQ(tb.load(path), 2);
  StepResult sa = ta.step(toy_batch(3), 2), sb = tb.step(toy_batch(3), 2);
  EXPECT_EQ(sa.loss, sb.loss);
  EXPECT_EQ(snapshot(a), snapshot(b));
  EXPECT_EQ(read_safetensors(path).metadata.at("note"), "test");
  std::remove(path.c_str());
}

TEST(Segmentation, BackboneConfigFromStateDictNames) {
  Rng rng(9);
  SegmenterConfig cfg = tiny(HeadKind::Linear);
  cfg.fpn.blocks = 2;
  Segmenter m(cfg, rng);
  SafeTensors st;
  add_module_state(st, m);
  EXPECT_EQ(backbone_prefix_of(st), "backbone.");
  FPN3dConfig f = fpn_config_of(st, "backbone.");
  EXPECT_EQ(f.base, 4);
  EXPECT_EQ(f.scales, 3);
  EXPECT_EQ(f.blocks, 2);
  SafeTensors bare;
  add_module_state(bare, m.backbone());
  EXPECT_EQ(backbone_prefix_of(bare), "");
  EXPECT_EQ(fpn_config_of(bare, "").scales, 3);
}

TEST(Segmentation, SlidingWindowOfTheNetworkEqualsOneWholeVolumeForward) {
  Rng rng(10);
  Segmenter m(tiny(HeadKind::NonLinear), rng);
  m.train(false);
  data::Volume v({12, 10, 6});
  Rng r(11);
  for (float& x : v.data) x = r.uniformf();
  SlidingWindowOptions o;
  o.patch = {16, 16, 8};  // the volume fits in one patch
  NoGradGuard g;
  auto fwd = [&](const Tensor& x) { return ag::sigmoid(m.forward(x)).value(); };
  std::vector<float> sw = sliding_window(v, fwd, o).to_vector<float>();
  std::vector<float> direct = fwd(Tensor::from_vector(v.data, {1, 1, 12, 10, 6})).to_vector<float>();
  EXPECT_EQ(sw, direct);
}

// Issue 11 (b): the frozen backbone's BatchNorm in fine-tuning - training mode (the program's Lightning
// BackboneFinetuning: running statistics re-estimated, weights untouched) or eval mode (nothing changes).
// Linear probing keeps eval mode whatever the setting (the program's probing.py runs eval_mode + no_grad).
TEST(Trainer, FrozenBackboneBatchNormModes) {
  auto run = [](Mode mode, bool bn_train) {
    Rng rng(12);
    Segmenter m(tiny(mode == Mode::Linear ? HeadKind::Linear : HeadKind::NonLinear), rng);
    TrainConfig c;
    c.mode = mode;
    c.freeze_steps = 100;
    c.frozen_bn_training = bn_train;
    Trainer t(m, c, Device::cpu());
    auto before = snapshot(m);
    for (int s = 0; s < 2; ++s) t.step(toy_batch(30 + s), s);
    auto after = snapshot(m);
    int params_changed = 0, buffers_changed = 0;
    for (auto& [n, p] : m.backbone().named_parameters())
      params_changed += before.at("backbone." + n) != after.at("backbone." + n);
    for (auto& [n, b] : m.backbone().named_buffers())
      buffers_changed += before.at("backbone." + n) != after.at("backbone." + n);
    return std::pair{params_changed, buffers_changed};
  };
  TrainConfig defaults;
  EXPECT_TRUE(defaults.frozen_bn_training) << "the program's behaviour is the default";
  auto [p1, b1] = run(Mode::Finetune, true);
  EXPECT_EQ(p1, 0) << "frozen weights moved";
  EXPECT_GT(b1, 0) << "training-mode BatchNorm should re-estimate the running statistics";
  auto [p2, b2] = run(Mode::Finetune, false);
  EXPECT_EQ(p2, 0);
  EXPECT_EQ(b2, 0) << "eval-mode BatchNorm must leave the pretraining statistics alone";
  auto [p3, b3] = run(Mode::Linear, true);
  EXPECT_EQ(p3, 0);
  EXPECT_EQ(b3, 0) << "linear probing keeps eval-mode BatchNorm";
}

// Issue 11 (g): fine-tuning and scratch use the chosen head; the probes keep theirs.
TEST(Trainer, FineTuningHeadChoice) {
  EXPECT_EQ(head_of(Mode::Finetune), HeadKind::NonLinear);
  EXPECT_EQ(head_of(Mode::Scratch), HeadKind::NonLinear);
  EXPECT_EQ(head_of(Mode::Finetune, HeadKind::Linear), HeadKind::Linear);
  EXPECT_EQ(head_of(Mode::Scratch, HeadKind::Linear), HeadKind::Linear);
  EXPECT_EQ(head_of(Mode::Linear, HeadKind::NonLinear), HeadKind::Linear);
  EXPECT_EQ(head_of(Mode::NonLinear, HeadKind::Linear), HeadKind::NonLinear);
  TrainConfig c;
  c.frozen_bn_training = false;
  EXPECT_EQ(train_config_to_json(c).at("frozen_bn_training"), false);
}
