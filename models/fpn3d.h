// FPN3d: the backbone, a 3D U-Net of pre-activation residual blocks that returns every decoder level
// (docs/method.md section 2). Level i has base * 2^i channels at 1 / 2^i of the input resolution.
//
// Parameter names are those of the reference PyTorch FPN3d (vox2vec) state dict:
//   first_conv.{weight,bias}
//   left_blocks.{i}.layers.{j}.layers.{0,3}.*   BatchNorm of ResBlock j of encoder level i
//   left_blocks.{i}.layers.{j}.layers.{2,5}.*   its two 3x3x3 convs
//   down_blocks.{i}.1.*                         1x1x1 conv c -> 2c after the max-pool
//   bottom_block.layers.{j}...
//   up_blocks.{k}.0.*, skip_blocks.{k}.*, right_blocks.{k}.layers.{j}...   k = 0 next to the bottom
#pragma once
#include <vector>

#include "models/layers.h"

namespace hdssl::models {

struct FPN3dConfig {
  int base = 32;    // channels of level 0
  int scales = 5;   // pyramid levels (encoder levels = scales - 1, plus the bottom)
  int blocks = 2;   // ResBlocks per level
  int channels(int level) const { return base << level; }
};

// `blocks` ResBlocks with 3x3x3 convs (models/layers.h) in a row ("layers.{j}").
class ResStack : public Module {
 public:
  ResStack(int64_t c, int blocks, Rng& rng, const ModuleOptions& o);
  Variable forward(Variable x);
 private:
  std::vector<ResBlock*> blocks_;
};

class FPN3d : public Module {
 public:
  FPN3d(const FPN3dConfig& cfg, Rng& rng, const ModuleOptions& o = {});
  // x [B, 1, X, Y, Z] -> pyramid [level 0 .. level scales-1], level i [B, base*2^i, ceil(X/2^i), ...].
  std::vector<Variable> forward(const Variable& x);
  const FPN3dConfig& config() const { return cfg_; }

 private:
  FPN3dConfig cfg_;
  Conv3d* first_conv_;
  std::vector<ResStack*> left_;       // encoder, level 0 first
  std::vector<Conv3d*> down_;         // down_blocks.{i}.1
  ResStack* bottom_;
  std::vector<Conv3d*> up_;           // up_blocks.{k}.0, k = 0 next to the bottom
  std::vector<Conv3d*> skip_;         // skip_blocks.{k}
  std::vector<ResStack*> right_;      // right_blocks.{k}
};

}  // namespace hdssl::models
