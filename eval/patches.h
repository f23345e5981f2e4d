// Training patches for the downstream task (docs/method.md section 6): with probability fg_prob a patch is
// centred on a random foreground voxel of a random class present in a random case, otherwise its start
// is uniform over the volume. Targets are one channel per foreground class (multi-label, 0/1).
//
// Determinism: batch k depends only on (seed, k), so a resumed run sees the same patches. Foreground
// voxels are listed once per case and class (at most `max_voxels_per_class`, a seeded subsample, as
// nnU-Net does) so sampling is O(1) per patch. Where a volume is smaller than the patch along an axis,
// the patch is placed with the volume inside it and padded with zeros (image) and background (labels).
#pragma once
#include <cstdint>
#include <vector>

#include "data/volume.h"
#include "engine/tensor.h"

namespace hdssl::eval {

struct PatchSamplerConfig {
  data::Dims3 patch{128, 128, 32};
  int classes = 13;
  double fg_prob = 0.5;
  int64_t max_voxels_per_class = 10000;
  uint64_t seed = 0;
};

struct PatchBatch {
  Tensor image;   // float32 [B, 1, px, py, pz]
  Tensor target;  // float32 [B, K, px, py, pz]
  std::vector<int> cases;                // which case each patch came from
  std::vector<data::Dims3> starts;       // first voxel of each patch in its volume (may be < 0: padded)
  std::vector<bool> foreground;          // centred on a foreground voxel
};

class PatchSampler {
 public:
  // images[i] and labels[i] share dims; the pointers must outlive the sampler.
  PatchSampler(std::vector<const data::Volume*> images, std::vector<const data::Volume*> labels, PatchSamplerConfig cfg);
  PatchBatch batch(uint64_t k, int batch_size) const;
  // Copies the patch of case i at `start` into img (px*py*pz) and tgt (K*px*py*pz).
  void extract(int i, data::Dims3 start, float* img, float* tgt) const;

 private:
  std::vector<const data::Volume*> images_, labels_;
  PatchSamplerConfig cfg_;
  // fg_[case][class-1]: flat voxel indices of that class
  std::vector<std::vector<std::vector<int64_t>>> fg_;
};

}  // namespace hdssl::eval
