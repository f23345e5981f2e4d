// FPN3d and the pretraining heads carry the reference PyTorch state-dict names and shapes
// (docs/method.md section 2) and the reference parameter count; the tiny fixture's weights load strictly.
#include <gtest/gtest.h>

#include <map>

#include "models/checkpoint.h"
#include "models/pretrainer.h"

using namespace hdssl;
using namespace hdssl::models;

namespace {
std::map<std::string, Shape> shapes(const Module& m) {
  std::map<std::string, Shape> s;
  for (auto& [n, v] : m.named_parameters()) s[n] = v.shape();
  for (auto& [n, b] : m.named_buffers()) s[n] = b.tensor ? b.tensor->shape() : Shape{};
  return s;
}
}  // namespace

TEST(FPN3d, NamesAndShapesAtThePapersSize) {
  Rng rng(0);
  FPN3d fpn({32, 5, 2}, rng);
  auto s = shapes(fpn);
  EXPECT_EQ(s.at("first_conv.weight"), (Shape{32, 1, 3, 3, 3}));
  EXPECT_EQ(s.at("first_conv.bias"), (Shape{32}));
  EXPECT_EQ(s.at("left_blocks.0.layers.0.layers.0.weight"), (Shape{32}));
  EXPECT_EQ(s.at("left_blocks.0.layers.1.layers.3.running_var"), (Shape{32}));
  EXPECT_EQ(s.at("left_blocks.0.layers.1.layers.3.num_batches_tracked"), (Shape{}));
  EXPECT_EQ(s.at("left_blocks.3.layers.1.layers.5.weight"), (Shape{256, 256, 3, 3, 3}));
  EXPECT_EQ(s.at("down_blocks.0.1.weight"), (Shape{64, 32, 1, 1, 1}));
  EXPECT_EQ(s.at("down_blocks.3.1.weight"), (Shape{512, 256, 1, 1, 1}));
  EXPECT_EQ(s.at("bottom_block.layers.1.layers.2.weight"), (Shape{512, 512, 3, 3, 3}));
  EXPECT_EQ(s.at("up_blocks.0.0.weight"), (Shape{256, 512, 1, 1, 1}));  // docs/method.md's example
  EXPECT_EQ(s.at("up_blocks.3.0.weight"), (Shape{32, 64, 1, 1, 1}));
  EXPECT_EQ(s.at("skip_blocks.0.weight"), (Shape{256, 256, 1, 1, 1}));
  EXPECT_EQ(s.at("right_blocks.3.layers.0.layers.2.weight"), (Shape{32, 32, 3, 3, 3}));
  EXPECT_EQ(s.count("left_blocks.4.layers.0.layers.0.weight"), 0u);
  EXPECT_EQ(fpn.parameter_count(), 47567872);  // python3 make_fixture_pretrain_step.py --count (torch 1.13)
}

TEST(Pretrainer, ParameterCountMatchesPyTorch) {
  Rng rng(0);
  Pretrainer ours(PretrainConfig::ours(), rng);
  EXPECT_EQ(ours.parameter_count(), 47686433);  // the reference PyTorch count: 47.7 M
  auto s = shapes(ours);
  EXPECT_EQ(s.at("scale_projs.4.weight"), (Shape{32, 512, 1, 1, 1}));
  EXPECT_EQ(s.at("proj_head.0.weight"), (Shape{160, 160}));
  EXPECT_EQ(s.at("proj_head.4.running_mean"), (Shape{160}));
  EXPECT_EQ(s.at("proj_head.6.weight"), (Shape{128, 160}));
  EXPECT_EQ(s.at("restoration.0.weight"), (Shape{16, 32, 3, 3, 3}));
  EXPECT_EQ(s.at("restoration.3.weight"), (Shape{1, 16, 1, 1, 1}));
  EXPECT_EQ(s.at("backbone.up_blocks.0.0.weight"), (Shape{256, 512, 1, 1, 1}));

  Pretrainer v2v(PretrainConfig::vox2vec(), rng);
  EXPECT_EQ(PretrainConfig::vox2vec().voxel_dim(), 1008);
  auto sv = shapes(v2v);
  EXPECT_EQ(sv.at("proj_head.0.weight"), (Shape{1008, 1008}));
  EXPECT_EQ(sv.count("scale_projs.0.weight"), 0u);
  EXPECT_EQ(sv.count("restoration.0.weight"), 0u);
}

TEST(Pretrainer, FrozenProjectionsAreNotTrainable) {
  Rng rng(0);
  PretrainConfig c;
  c.base = 2; c.scales = 2;
  c.freeze_projections = true;
  Pretrainer m(c, rng);
  for (auto& [n, v] : m.named_parameters())
    EXPECT_EQ(v.requires_grad(), n.rfind("scale_projs.", 0) != 0) << n;
  c.restoration_single_conv = true;
  Pretrainer single(c, rng);
  EXPECT_EQ(shapes(single).at("restoration.0.weight"), (Shape{1, 2, 1, 1, 1}));
  EXPECT_EQ(shapes(single).count("restoration.3.weight"), 0u);
}

TEST(Pretrainer, FixtureWeightsFromPyTorchLoadStrictly) {
  SafeTensors fx = read_safetensors(std::string(HDSSL_SOURCE_DIR) + "/tests/reference/fixtures/pretrain_step_tiny.safetensors");
  PretrainConfig c;
  c.base = std::stoi(fx.metadata.at("base"));
  c.scales = std::stoi(fx.metadata.at("scales"));
  c.proj_width = std::stoi(fx.metadata.at("proj_width"));
  Rng rng(0);
  Pretrainer m(c, rng, {DType::F64, Device::cpu()});
  // Every "init." tensor has a home and every parameter / buffer is in the file (strict).
  LoadReport r = load_module_state(m, fx, "init.", true);
  EXPECT_TRUE(r.ok());
  EXPECT_GT(m.parameter_count(), 1000);
}
