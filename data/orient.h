// Reorientation to RAS by axis permutation and flips only (no interpolation), and back again.
#pragma once
#include <array>

#include "data/volume.h"

namespace hdssl::data {

// New (RAS) axis a reads old axis perm[a], reversed when flip[a]. Identity: perm {0,1,2}, no flips.
struct OrientRecord {
  std::array<int, 3> perm{0, 1, 2};
  std::array<bool, 3> flip{false, false, false};
  Dims3 old_dims{0, 0, 0};
};

// The permutation/flips that bring `affine`'s voxel axes closest to R, A, S.
OrientRecord ras_orientation(const Mat44& affine, Dims3 dims);
// Applies it: voxels are moved (exactly) and the affine is updated so each voxel keeps its world position.
Volume apply_orientation(const Volume& v, const OrientRecord& r);
// The inverse: a volume in the RAS grid back to the original voxel axes.
Volume undo_orientation(const Volume& ras, const OrientRecord& r);
inline Volume to_ras(const Volume& v, OrientRecord* rec = nullptr) {
  OrientRecord r = ras_orientation(v.affine, v.dims);
  if (rec) *rec = r;
  return apply_orientation(v, r);
}

}  // namespace hdssl::data
