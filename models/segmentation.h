// Segmentation on top of the FPN3d pyramid (docs/method.md section 6): the linear probe, the non-linear head,
// and the Segmenter that joins a backbone and a head and knows whether the backbone is frozen.
//
//   LinearProbe    per level i a 1x1x1 conv base*2^i -> K (bias only at level 0), names head.{i}.*;
//                  deepest first, the running sum is upsampled x2 (nearest), cropped to the next level's
//                  size and added to that level's output - the same numbers as upsampling every level to
//                  full resolution and summing, and the same order as the PyTorch probe in
//                  scripts/torch_reference_bench.py.
//   NonLinearHead  the "mirror decoder of 1x1x1 ResBlocks": the FPN decoder again with 1x1x1 kernels.
//                  h = R(level L); for i = L-1 .. 0: h = R(upsample2(conv1(h)) cropped + level i) with
//                  conv1 a 1x1x1 conv base*2^(i+1) -> base*2^i; logits = conv1(h) -> K. R is
//                  ResBlock(c, 1) (models/layers.h): BN -> ReLU -> conv1x1x1 -> BN -> ReLU -> conv1x1x1, plus
//                  the identity.
//                  Names head.blocks.{i}.layers.{0,2,3,5}.* (i = level), head.ups.{i}.* (into level i),
//                  head.out.*.
//   Segmenter      children backbone.* (an FPN3d, so pretrained "backbone.*" weights load by name) and
//                  head.*. While the backbone is frozen its forward runs without recording a graph, so no
//                  gradient reaches it, and with BatchNorm in eval mode (the pretraining running
//                  statistics; nothing in it changes) - or, with set_frozen_batchnorm_training(true), in
//                  the Segmenter's train()/eval() mode: batch statistics while training, and the running
//                  statistics re-estimated on the downstream data (Lightning's BackboneFinetuning
//                  default, train_bn=True, used by the published program). Unfrozen, the backbone
//                  follows the Segmenter's train()/eval() mode.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "models/fpn3d.h"

namespace hdssl::models {

class LinearProbe : public Module {
 public:
  LinearProbe(const FPN3dConfig& fpn, int classes, Rng& rng, const ModuleOptions& o = {});
  Variable forward(const std::vector<Variable>& pyramid) const;  // logits [B, K, X, Y, Z] at level 0's size

 private:
  std::vector<Conv3d*> convs_;
};

class NonLinearHead : public Module {
 public:
  NonLinearHead(const FPN3dConfig& fpn, int classes, Rng& rng, const ModuleOptions& o = {});
  Variable forward(const std::vector<Variable>& pyramid);

 private:
  std::vector<ResBlock*> blocks_;   // per level, 1x1x1 convs
  std::vector<Conv3d*> ups_;        // ups_[i]: level i+1 -> level i channels (i = 0 .. L-1)
  Conv3d* out_;
};

enum class HeadKind { Linear, NonLinear };
HeadKind parse_head_kind(const std::string& s);  // "linear" / "nonlinear"
const char* head_kind_name(HeadKind k);

struct SegmenterConfig {
  FPN3dConfig fpn;
  int classes = 13;
  HeadKind head = HeadKind::Linear;
};

class Segmenter : public Module {
 public:
  Segmenter(const SegmenterConfig& cfg, Rng& rng, const ModuleOptions& o = {});
  // Logits [B, K, X, Y, Z] of patches x [B, 1, X, Y, Z].
  Variable forward(const Tensor& x);
  // Frozen: the backbone's parameters stop requiring gradients and its forward runs in eval mode under
  // a NoGradGuard. Unfrozen: all parameters require gradients again.
  void set_backbone_frozen(bool frozen);
  bool backbone_frozen() const { return frozen_; }
  // While frozen: BatchNorm of the backbone in training mode (true) or in eval mode (false, the default).
  void set_frozen_batchnorm_training(bool on) { frozen_bn_training_ = on; }
  bool frozen_batchnorm_training() const { return frozen_bn_training_; }

  FPN3d& backbone() { return *backbone_; }
  Module& head() { return *head_; }
  std::vector<Variable> head_parameters() const;
  std::vector<Variable> backbone_parameters() const;
  const SegmenterConfig& config() const { return cfg_; }

 private:
  SegmenterConfig cfg_;
  FPN3d* backbone_;
  Module* head_;
  LinearProbe* linear_ = nullptr;
  NonLinearHead* nonlinear_ = nullptr;
  bool frozen_ = false;
  bool frozen_bn_training_ = false;
};

// The FPN3d shape (base, scales, blocks) of a state dict, read from the tensor shapes under `prefix`
// ("backbone." or ""): base from first_conv.weight, scales from the number of down_blocks + 1, blocks
// from the ResBlocks of left_blocks.0 (or of bottom_block for a single-scale net). Throws
// CheckpointError when first_conv.weight is missing.
struct SafeTensors;
FPN3dConfig fpn_config_of(const SafeTensors& st, const std::string& prefix);
// "backbone." when the file holds backbone.first_conv.weight, "" when it holds first_conv.weight
// (a bare FPN3d state dict); throws CheckpointError otherwise.
std::string backbone_prefix_of(const SafeTensors& st);

}  // namespace hdssl::models
