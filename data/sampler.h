// The pretraining pair sampler of docs/method.md section 3: an anchor voxel in the body, two patch-sized boxes
// that both contain it, and up to n positive pairs (body voxels inside both boxes) as coordinates in
// each patch.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "data/preprocess.h"
#include "engine/random.h"

namespace hdssl::data {

struct PairSample {
  int volume = 0;                 // index into the volume list
  Dims3 anchor{0, 0, 0};          // volume coordinates
  Dims3 start_a{0, 0, 0}, start_b{0, 0, 0};  // first voxel of each box in the volume
  // Positive pairs: voxel v of the volume is coords_a[k] = v - start_a in patch A and coords_b[k] = v - start_b.
  std::vector<std::array<int32_t, 3>> coords_a, coords_b;
  int64_t overlap_body = 0;       // body voxels in both boxes (before subsampling)
};

// Draws one pair from `vol` (which must be at least `patch` in every axis: preprocess grows it).
// Anchor: uniform over body voxels (uniform over all voxels if the mask is empty). Boxes: each start
// uniform among the starts whose box contains the anchor and stays inside the volume. Pairs: exactly n,
// drawn without replacement from the body voxels in the overlap; when fewer than n exist, all of them
// are taken and the rest are drawn with replacement from them (so every batch has the same n).
PairSample sample_pair(const PreprocessedVolume& vol, Dims3 patch, int n, Rng& rng);

// Copies the patch starting at `start` into out (z fastest, patch[0]*patch[1]*patch[2] floats).
void extract_patch(const Volume& v, Dims3 start, Dims3 patch, float* out);

}  // namespace hdssl::data
