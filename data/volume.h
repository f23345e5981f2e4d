// Volume: the plain 3D image type of the data room, and the 4x4 affine helpers around it.
//
// Storage is z fastest: voxel (x, y, z) lives at data[(x * ny + y) * nz + z]. The network tensors are
// N,C,X,Y,Z row-major, so a patch of a Volume copies into a tensor row by row without reordering.
// NIfTI files store x fastest; the reader and the writer transpose on the fly.
// `affine` maps voxel indices (x, y, z, 1) to world millimetres in NIfTI's RAS+ convention.
#pragma once
#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/check.h"

namespace hdssl::data {

// Errors about input data (bad files, bad folders); the message names the file and the field.
// A kind of hdssl::Error, so one `catch (const Error&)` sees every refusal of the library.
struct DataError : Error {
  using Error::Error;
};

using Mat44 = std::array<std::array<double, 4>, 4>;
using Dims3 = std::array<int64_t, 3>;

inline Mat44 identity44() {
  Mat44 m{};
  for (int i = 0; i < 4; ++i) m[i][i] = 1.0;
  return m;
}
Mat44 matmul44(const Mat44& a, const Mat44& b);
Mat44 inverse44(const Mat44& m);  // general inverse (Gauss-Jordan with pivoting); throws if singular
// Length of each voxel axis in world units (the norm of the affine's first three columns).
std::array<double, 3> affine_spacing(const Mat44& a);

struct Volume {
  Dims3 dims{0, 0, 0};
  std::vector<float> data;             // z fastest, size dims[0]*dims[1]*dims[2]
  std::array<double, 3> spacing{1, 1, 1};  // mm per voxel along x, y, z (always equals affine_spacing(affine))
  Mat44 affine = identity44();         // voxel -> world (RAS+ mm)

  Volume() = default;
  Volume(Dims3 d, float fill = 0.f) : dims(d), data(size_t(d[0] * d[1] * d[2]), fill) {}
  int64_t numel() const { return dims[0] * dims[1] * dims[2]; }
  int64_t index(int64_t x, int64_t y, int64_t z) const { return (x * dims[1] + y) * dims[2] + z; }
  float& at(int64_t x, int64_t y, int64_t z) { return data[size_t(index(x, y, z))]; }
  float at(int64_t x, int64_t y, int64_t z) const { return data[size_t(index(x, y, z))]; }
  // Sets the affine to diag(spacing) with the given origin (world position of voxel 0).
  void set_diagonal_affine(std::array<double, 3> sp, std::array<double, 3> origin = {0, 0, 0});
};

// A byte mask on the same grid as a Volume (1 = inside), same z-fastest layout.
struct Mask {
  Dims3 dims{0, 0, 0};
  std::vector<uint8_t> data;
  int64_t index(int64_t x, int64_t y, int64_t z) const { return (x * dims[1] + y) * dims[2] + z; }
};

}  // namespace hdssl::data
