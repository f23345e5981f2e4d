// Weights imported from PyTorch checkpoints compute PyTorch's features. The fixtures (made by
// tests/reference/make_fixtures_import_weights.py with Debian's torch 1.13) are a Lightning-style checkpoint
// of hierarchical-dense-ssl's module (base 2, 3 scales, prefix "backbone.") and a plain vox2vec-style
// state dict (base 1, 4 scales), each imported by scripts/import_weights.py, and PyTorch's eval-mode
// pyramid on an 11 x 9 x 6 input. float64: the float32 weights widen exactly, so both sides compute the
// same function in float64 and agree to 1e-10 (relative to each level's largest value). float32: both sides
// round differently in their convolution sums; 1e-5 relative to the level's largest value holds with room.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "autograd/variable.h"
#include "data/preprocess_compat.h"
#include "models/checkpoint.h"
#include "models/fpn3d.h"
#include "models/segmentation.h"

using namespace hdssl;
using namespace hdssl::models;

namespace {
const std::string kFixtures = HDSSL_SOURCE_DIR "/tests/reference/fixtures/";

double rel_diff(const Tensor& got, const Tensor& want) {
  std::vector<double> a = got.to(DType::F64).to_vector<double>(), b = want.to(DType::F64).to_vector<double>();
  double num = 0, den = 1e-300;
  for (size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, std::abs(a[i] - b[i]));
    den = std::max(den, std::abs(b[i]));
  }
  return num / den;
}

void check_forward(const std::string& name, int base, int scales, const std::string& window) {
  SCOPED_TRACE(name);
  SafeTensors w = read_safetensors(kFixtures + "import_" + name + ".safetensors");
  EXPECT_EQ(w.metadata.at("format"), "hdssl.backbone");
  EXPECT_EQ(w.metadata.at("base_channels"), std::to_string(base));
  EXPECT_EQ(w.metadata.at("num_scales"), std::to_string(scales));
  EXPECT_EQ(w.metadata.at("blocks"), "2");
  auto pre = data::expected_preprocessing(w.metadata, name);
  ASSERT_TRUE(pre.has_value());
  EXPECT_EQ(pre->modality, data::Modality::CT);
  EXPECT_EQ(w.metadata.at("expected_ct_window_hu"), window);
  EXPECT_EQ(backbone_prefix_of(w), "");
  const FPN3dConfig cfg = fpn_config_of(w, "");
  ASSERT_EQ(cfg.base, base);
  ASSERT_EQ(cfg.scales, scales);

  SafeTensors fx = read_safetensors(kFixtures + "features_" + name + ".safetensors");
  for (DType dt : {DType::F64, DType::F32}) {
    Rng rng(1);
    FPN3d fpn(cfg, rng, ModuleOptions{dt, Device::cpu()});
    load_module_state(fpn, w, "", true);
    fpn.train(false);
    NoGradGuard no_grad;
    std::vector<Variable> pyr = fpn.forward(Variable(to_tensor(*fx.find("input"), dt, Device::cpu())));
    ASSERT_EQ(int(pyr.size()), scales);
    for (int i = 0; i < scales; ++i) {
      const std::string key = "level_" + std::to_string(i) + (dt == DType::F64 ? "_f64" : "_f32");
      const StoredTensor* s = fx.find(key);
      ASSERT_NE(s, nullptr) << key;
      ASSERT_EQ(pyr[size_t(i)].shape(), s->shape) << key;
      const Tensor want = to_tensor(*s, DType::F64, Device::cpu());
      const double d = rel_diff(pyr[size_t(i)].value(), want);
      std::printf("%s %s: max |hdssl - torch| / max |torch| = %.3g\n", name.c_str(), key.c_str(), d);
      EXPECT_LT(d, dt == DType::F64 ? 1e-10 : 1e-5) << key;
    }
  }
}
}  // namespace

TEST(ImportedWeights, LightningCheckpointOfOursGivesPyTorchsPyramid) { check_forward("ours_tiny", 2, 3, "-175,250"); }

TEST(ImportedWeights, Vox2vecStateDictGivesPyTorchsPyramid) { check_forward("vox2vec_tiny", 1, 4, "-1350,1000"); }
