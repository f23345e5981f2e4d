// The pretraining heads on top of the FPN3d pyramid (docs/method.md section 3, steps 5, 6 and 8):
//   ScaleProjections  "balanced" voxel vectors: per level i a 1x1x1 conv base*2^i -> width (32), names
//                     scale_projs.{i}.{weight,bias}; trainable by default, freezable.
//   ProjectionHead    Linear(d,d) -> BN1d -> ReLU -> Linear(d,d) -> BN1d -> ReLU -> Linear(d,128), then
//                     L2 normalization; names proj_head.{0,1,3,4,6}.* like vox2vec's nn.Sequential.
//   RestorationHead   on level 0: conv3x3x3 base -> base/2, BN, ReLU, conv1x1x1 -> 1 (the paper's two
//                     layers, names restoration.{0,1,3}.*), or one 1x1x1 conv (restoration.0.*).
#pragma once
#include <vector>

#include "models/layers.h"

namespace hdssl::models {

class ScaleProjections : public Module {
 public:
  ScaleProjections(int base, int scales, int width, Rng& rng, const ModuleOptions& o);
  // Projects the voxel rows gathered at level i, [N, base*2^i] -> [N, width]. A 1x1x1 conv commutes with
  // picking voxels, so projecting the gathered rows equals gathering from the projected volume.
  Variable project(int level, const Variable& rows) const { return convs_[size_t(level)]->forward_rows(rows); }
 private:
  std::vector<Conv3d*> convs_;
};

class ProjectionHead : public Module {
 public:
  ProjectionHead(int64_t d, int64_t out, Rng& rng, const ModuleOptions& o);
  Variable forward(const Variable& x);  // [N, d] -> unit rows [N, out]
 private:
  Linear *fc0_, *fc3_, *fc6_;
  BatchNorm *bn1_, *bn4_;
};

class RestorationHead : public Module {
 public:
  RestorationHead(int base, bool single_conv, Rng& rng, const ModuleOptions& o);
  Variable forward(const Variable& level0);  // [B, base, X, Y, Z] -> [B, 1, X, Y, Z]
 private:
  Conv3d* conv0_ = nullptr;
  BatchNorm* bn1_ = nullptr;
  Conv3d* conv3_ = nullptr;
};

}  // namespace hdssl::models
