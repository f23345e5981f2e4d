// Sliding-window inference over a whole volume, and the probabilities -> label map rule.
//
// Windows of the patch size (clipped to the volume where the volume is smaller) are placed along each
// axis as nnU-Net does: with overlap 0.5 the target step is half a patch, the number of windows is
// ceil((dim - patch) / step) + 1, and the starts are spread evenly from 0 to dim - patch (rounded). Each
// window's class probabilities are added into an accumulator and every voxel is divided by the number of
// windows that covered it (constant weighting: a plain average). A volume that fits in one patch is
// therefore exactly one forward of the whole volume.
//
// The forward is any function patches [B, 1, px, py, pz] (float32, CPU) -> probabilities
// [B, K, px, py, pz] (any device, float32 or float64), so this file knows nothing about networks.
#pragma once
#include <functional>
#include <vector>

#include "data/volume.h"
#include "engine/tensor.h"

namespace hdssl::eval {

using PatchForward = std::function<Tensor(const Tensor& patches)>;

struct SlidingWindowOptions {
  data::Dims3 patch{128, 128, 32};
  double overlap = 0.5;  // fraction of a patch shared by neighbouring windows, in [0, 1)
  int batch = 1;         // windows per forward call
};

// Window starts along one axis of length dim for windows of length min(patch, dim).
std::vector<int64_t> window_starts(int64_t dim, int64_t patch, double overlap);

// Probabilities [K, X, Y, Z] (float32, CPU) of the whole image.
Tensor sliding_window(const data::Volume& image, const PatchForward& forward, const SlidingWindowOptions& o);

// Label map from probabilities [K, X, Y, Z]: each voxel takes the class (1..K) with the highest
// probability among those above `threshold`, or background 0 when none is. The geometry (spacing,
// affine) is copied from `like`, whose dims must match.
data::Volume labels_from_probabilities(const Tensor& probs, const data::Volume& like, double threshold = 0.5);

}  // namespace hdssl::eval
