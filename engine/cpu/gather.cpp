// Voxel gather: the feature vectors of a list of voxels, read at one pyramid level.
//
// A full-resolution coordinate v maps to voxel v >> level at level L (an integer shift is floor(v / 2^L)
// for the non-negative coordinates we accept). Coordinates are validated first, serially, so a bad one
// throws a clear hdssl::Error naming it instead of reading out of bounds. The backward pass scatter-adds
// rows of dout into a zeroed dfeat; repeated voxels accumulate. It is parallel over (b, c) feature planes,
// each summing its own voxels in row order, so there are no races and no thread-count dependence.
#include <algorithm>
#include <string>
#include <vector>

#include "engine/cpu/cpu_backend.h"

namespace hdssl {
namespace {
// Checks every coordinate (the shapes are the dispatch's check); returns the flat voxel index (within one
// [X,Y,Z] plane) of each row.
std::vector<int64_t> voxel_offsets(const Tensor& feat, const Tensor& coords, int level, const char* op) {
  const int64_t B = coords.size(0), n = coords.size(1), dims[3] = {feat.size(2), feat.size(3), feat.size(4)};
  const int32_t* pc = coords.data<int32_t>();
  std::vector<int64_t> off(size_t(B * n));
  for (int64_t r = 0; r < B * n; ++r) {
    const int32_t* v = pc + 3 * r;
    int64_t flat = 0;
    for (int d = 0; d < 3; ++d) {
      const int64_t q = v[d] >> level;
      if (v[d] < 0 || q >= dims[d]) {
        throw Error(std::string(op) + ": coordinate " + std::to_string(r % n) + " of batch item " +
                    std::to_string(r / n) + " = (" + std::to_string(v[0]) + ", " + std::to_string(v[1]) + ", " +
                    std::to_string(v[2]) + ") is outside the level-" + std::to_string(level) + " feature volume " +
                    shape_str({dims[0], dims[1], dims[2]}) + " (axis " + std::to_string(d) + " maps to " +
                    std::to_string(q) + ")");
      }
      flat = flat * dims[d] + q;
    }
    off[size_t(r)] = flat;
  }
  return off;
}
}  // namespace

void CpuBackend::gather_voxels(const Tensor& feat, const Tensor& coords, int level, Tensor& out) {
  const std::vector<int64_t> off = voxel_offsets(feat, coords, level, "gather_voxels");
  const int64_t B = feat.size(0), C = feat.size(1), V = feat.size(2) * feat.size(3) * feat.size(4);
  const int64_t n = coords.size(1);
  dispatch_float(feat.dtype(), "gather_voxels", [&](auto tag) {
    using T = decltype(tag);
    const T* pf = feat.data<T>();
    T* po = out.data<T>();
#pragma omp parallel for schedule(static) if (B * n * C > 65536)
    for (int64_t r = 0; r < B * n; ++r) {
      const T* f = pf + (r / n) * C * V + off[size_t(r)];
      for (int64_t c = 0; c < C; ++c) po[r * C + c] = f[c * V];
    }
  });
}

void CpuBackend::gather_voxels_backward(const Tensor& dout, const Tensor& coords, int level, Tensor& dfeat) {
  const std::vector<int64_t> off = voxel_offsets(dfeat, coords, level, "gather_voxels_backward");
  const int64_t B = dfeat.size(0), C = dfeat.size(1), V = dfeat.size(2) * dfeat.size(3) * dfeat.size(4);
  const int64_t n = coords.size(1);
  dispatch_float(dfeat.dtype(), "gather_voxels_backward", [&](auto tag) {
    using T = decltype(tag);
    const T* pd = dout.data<T>();
    T* pf = dfeat.data<T>();
#pragma omp parallel for schedule(static) if (dfeat.numel() > 65536)
    for (int64_t bc = 0; bc < B * C; ++bc) {
      const int64_t b = bc / C, c = bc % C;
      T* plane = pf + bc * V;
      std::fill(plane, plane + V, T(0));
      for (int64_t k = 0; k < n; ++k) plane[off[size_t(b * n + k)]] += pd[(b * n + k) * C + c];
    }
  });
}

}  // namespace hdssl
