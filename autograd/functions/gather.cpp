// Voxel gather: rows of features at given voxels of one pyramid level; the backward closure scatter-adds
// the row gradients back (repeated voxels accumulate). The coordinates are constants.
#include "autograd/functions.h"

namespace hdssl::ag {

Variable gather_voxels(const Variable& feat, const Tensor& coords, int level) {
  const Tensor& fv = feat.value();
  HDSSL_CHECK(fv.dim() == 5 && coords.dim() == 3) << "gather_voxels: features " << fv.describe() << ", coords "
                                                  << coords.describe();
  Tensor out = Tensor::empty({coords.size(0) * coords.size(1), fv.size(1)}, fv.dtype(), fv.device());
  backend(fv.device()).gather_voxels(fv, coords, level, out);
  const Shape fs = fv.shape();
  return make_result("gather_voxels", out, {feat},
                     [coords, level, fs](const Tensor& g, const std::vector<bool>&, std::vector<Tensor>& gin) {
                       gin[0] = Tensor::empty(fs, g.dtype(), g.device());
                       backend(g.device()).gather_voxels_backward(g, coords, level, gin[0]);
                     });
}

}  // namespace hdssl::ag
