// Pretrainer: the whole pretraining network and its loss (docs/method.md section 3, steps 4-9).
//
// Children and their state-dict prefixes: backbone.* (FPN3d), scale_projs.{i}.* ("balanced" only),
// proj_head.* (the MLP to 128), restoration.* (only with the restoration loss). One call of loss()
// runs both views through backbone and heads, with BatchNorm statistics per view as in the reference
// program, and returns L = Lc + lambda * Lr with its terms.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "models/fpn3d.h"
#include "models/heads.h"

namespace hdssl::models {

struct PretrainConfig {
  std::string arch = "ours";     // "ours" (balanced, base 32, 5 scales) or "vox2vec" (base 16, 6 scales)
  int base = 32, scales = 5, blocks = 2;
  bool balanced = true;          // per-scale 1x1x1 projections before the concat
  int proj_width = 32;           // channels per scale after the projection
  bool freeze_projections = false;
  int embed_dim = 128;           // output of the projection head
  double tau = 0.1;              // InfoNCE temperature
  double lambda = 10.0;          // weight of the restoration loss
  bool restoration = true;       // Lr on / off
  bool restoration_single_conv = false;  // the published program's single 1x1x1 conv instead of two layers
  // The paper's two configurations (docs/method.md section 1); other fields keep their values.
  static PretrainConfig ours();
  static PretrainConfig vox2vec();  // base 16, 6 scales, raw concat (d = 1008), no restoration
  int voxel_dim() const;            // d: the width of the concatenated voxel vector
  std::string to_json() const;
  static PretrainConfig from_json(const std::string& s);
};

// One batch of the step: two augmented views, their un-augmented targets and the positive pairs.
struct PretrainInputs {
  Tensor view_a, view_b;       // [B, 1, X, Y, Z]
  Tensor target_a, target_b;   // [B, 1, X, Y, Z]
  Tensor coords_a, coords_b;   // int32 [B, n, 3], voxel k of pair b in patch A and in patch B
};

struct PretrainLoss {
  Variable total, contrastive, restoration;  // L, Lc, Lr (Lr undefined without restoration)
};

class Pretrainer : public Module {
 public:
  Pretrainer(const PretrainConfig& cfg, Rng& rng, const ModuleOptions& o = {});
  // Forward of both views and the loss; call total.backward() for the gradients.
  PretrainLoss loss(const PretrainInputs& in);
  // The voxel embeddings of one view: unit rows [B*n, embed_dim] (step 5 and 6), and level 0 in *level0.
  Variable embed(const Tensor& view, const Tensor& coords, Variable* level0 = nullptr);

  // --gather-negatives: when set, loss() passes both views' embeddings through it before InfoNCE (a
  // data-parallel run sets dist::all_gather_rows, so every anchor sees every rank's negatives). Unset: as is.
  using RowGather = std::function<Variable(const Variable&)>;
  void set_negatives_gather(RowGather g) { gather_ = std::move(g); }
  bool gathers_negatives() const { return bool(gather_); }

  FPN3d& backbone() { return *backbone_; }
  const PretrainConfig& config() const { return cfg_; }

 private:
  PretrainConfig cfg_;
  FPN3d* backbone_;
  ScaleProjections* projs_ = nullptr;
  ProjectionHead* head_;
  RestorationHead* rest_ = nullptr;
  RowGather gather_;
};

}  // namespace hdssl::models
