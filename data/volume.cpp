// Small 4x4 matrix helpers for affines (voxel -> world).
#include "data/volume.h"

#include <cmath>
#include <utility>

namespace hdssl::data {

Mat44 matmul44(const Mat44& a, const Mat44& b) {
  Mat44 r{};
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j)
      for (int k = 0; k < 4; ++k) r[i][j] += a[i][k] * b[k][j];
  return r;
}

Mat44 inverse44(const Mat44& m) {
  Mat44 a = m, inv = identity44();
  for (int c = 0; c < 4; ++c) {
    int p = c;
    for (int r = c + 1; r < 4; ++r)
      if (std::fabs(a[r][c]) > std::fabs(a[p][c])) p = r;
    if (!(std::fabs(a[p][c]) > 1e-300)) throw DataError("singular affine matrix");
    std::swap(a[c], a[p]);
    std::swap(inv[c], inv[p]);
    double d = a[c][c];
    for (int j = 0; j < 4; ++j) { a[c][j] /= d; inv[c][j] /= d; }
    for (int r = 0; r < 4; ++r) {
      if (r == c) continue;
      double f = a[r][c];
      for (int j = 0; j < 4; ++j) { a[r][j] -= f * a[c][j]; inv[r][j] -= f * inv[c][j]; }
    }
  }
  return inv;
}

std::array<double, 3> affine_spacing(const Mat44& a) {
  std::array<double, 3> s{};
  for (int j = 0; j < 3; ++j) s[j] = std::sqrt(a[0][j] * a[0][j] + a[1][j] * a[1][j] + a[2][j] * a[2][j]);
  return s;
}

void Volume::set_diagonal_affine(std::array<double, 3> sp, std::array<double, 3> origin) {
  spacing = sp;
  affine = identity44();
  for (int i = 0; i < 3; ++i) { affine[i][i] = sp[i]; affine[i][3] = origin[i]; }
}

}  // namespace hdssl::data
