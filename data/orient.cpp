// RAS reorientation: a pure index permutation. For new voxel n, old index along axis perm[a] is
// n[a] (or old_dim - 1 - n[a] when flipped); the affine gets the same map composed on its right.
#include "data/orient.h"

#include <cmath>

namespace hdssl::data {
namespace {

// Matrix taking new voxel indices to old voxel indices.
Mat44 new_to_old(const OrientRecord& r) {
  Mat44 m{};
  m[3][3] = 1;
  for (int a = 0; a < 3; ++a) {
    int o = r.perm[size_t(a)];
    if (r.flip[size_t(a)]) { m[o][a] = -1; m[o][3] = double(r.old_dims[size_t(o)] - 1); }
    else m[o][a] = 1;
  }
  return m;
}

}  // namespace

OrientRecord ras_orientation(const Mat44& A, Dims3 dims) {
  OrientRecord r;
  r.old_dims = dims;
  bool used_world[3] = {false, false, false}, used_axis[3] = {false, false, false};
  for (int round = 0; round < 3; ++round) {
    double best = -1; int bw = 0, ba = 0;
    for (int ax = 0; ax < 3; ++ax) {
      if (used_axis[ax]) continue;
      double n = std::sqrt(A[0][ax] * A[0][ax] + A[1][ax] * A[1][ax] + A[2][ax] * A[2][ax]);
      for (int w = 0; w < 3; ++w)
        if (!used_world[w] && std::fabs(A[w][ax]) / n > best) { best = std::fabs(A[w][ax]) / n; bw = w; ba = ax; }
    }
    used_world[bw] = used_axis[ba] = true;
    r.perm[size_t(bw)] = ba;
    r.flip[size_t(bw)] = A[bw][ba] < 0;
  }
  return r;
}

Volume apply_orientation(const Volume& v, const OrientRecord& r) {
  Dims3 nd{v.dims[size_t(r.perm[0])], v.dims[size_t(r.perm[1])], v.dims[size_t(r.perm[2])]};
  Volume out(nd);
  int64_t step[3] = {v.dims[1] * v.dims[2], v.dims[2], 1};  // old strides
  int64_t s[3], o0 = 0;
  for (int a = 0; a < 3; ++a) {
    int o = r.perm[size_t(a)];
    s[a] = r.flip[size_t(a)] ? -step[o] : step[o];
    if (r.flip[size_t(a)]) o0 += (v.dims[size_t(o)] - 1) * step[o];
  }
  float* dst = out.data.data();
  for (int64_t x = 0; x < nd[0]; ++x)
    for (int64_t y = 0; y < nd[1]; ++y) {
      int64_t base = o0 + x * s[0] + y * s[1];
      for (int64_t z = 0; z < nd[2]; ++z) *dst++ = v.data[size_t(base + z * s[2])];
    }
  out.affine = matmul44(v.affine, new_to_old(r));
  out.spacing = affine_spacing(out.affine);
  return out;
}

Volume undo_orientation(const Volume& ras, const OrientRecord& r) {
  // The inverse permutation: old axis o is new axis inv[o], flipped alike.
  OrientRecord inv;
  for (int a = 0; a < 3; ++a) {
    inv.perm[size_t(r.perm[size_t(a)])] = a;
    inv.flip[size_t(r.perm[size_t(a)])] = r.flip[size_t(a)];
  }
  inv.old_dims = ras.dims;
  return apply_orientation(ras, inv);
}

}  // namespace hdssl::data
