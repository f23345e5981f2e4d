// Max-pooling, nearest upsampling, cropping and channel copies: pure data movement on [N*C] volumes.
//
// Max-pool 2x2x2 in ceil mode: output voxel o covers input [2o, min(2o+2, X)) on each axis, so an odd size
// leaves a partial last window (never an empty one). The window is scanned x, then y, then z, keeping the
// first maximum (a strict >) like PyTorch; idx stores its flat index within the sample-channel volume, and
// the backward pass scatters dy there. Windows do not overlap, so every loop is parallel over (n, c)
// volumes without races.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/cpu/cpu_backend.h"

namespace hdssl {
namespace {
int64_t half_up(int64_t v) { return (v + 1) / 2; }
}  // namespace

void CpuBackend::maxpool2_forward(const Tensor& x, Tensor& y, Tensor& idx) {
  const int64_t NC = x.size(0) * x.size(1), X = x.size(2), Y = x.size(3), Z = x.size(4);
  const int64_t OX = half_up(X), OY = half_up(Y), OZ = half_up(Z);
  dispatch_float(x.dtype(), "maxpool2", [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.data<T>();
    T* py = y.data<T>();
    int32_t* pi = idx.data<int32_t>();
#pragma omp parallel for schedule(static) if (x.numel() > 65536)
    for (int64_t v = 0; v < NC; ++v) {
      const T* in = px + v * X * Y * Z;
      int64_t o = v * OX * OY * OZ;
      for (int64_t ox = 0; ox < OX; ++ox)
        for (int64_t oy = 0; oy < OY; ++oy)
          for (int64_t oz = 0; oz < OZ; ++oz, ++o) {
            int64_t best = (2 * ox * Y + 2 * oy) * Z + 2 * oz;
            T m = in[best];
            for (int64_t ix = 2 * ox; ix < std::min(X, 2 * ox + 2); ++ix)
              for (int64_t iy = 2 * oy; iy < std::min(Y, 2 * oy + 2); ++iy)
                for (int64_t iz = 2 * oz; iz < std::min(Z, 2 * oz + 2); ++iz) {
                  const int64_t i = (ix * Y + iy) * Z + iz;
                  if (in[i] > m || std::isnan(in[i])) {  // PyTorch's rule: a NaN propagates
                    m = in[i];
                    best = i;
                  }
                }
            py[o] = m;
            pi[o] = int32_t(best);
          }
    }
  });
}

void CpuBackend::maxpool2_backward(const Tensor& dy, const Tensor& idx, Tensor& dx) {
  const int64_t NC = dx.size(0) * dx.size(1), V = dx.size(2) * dx.size(3) * dx.size(4);
  const int64_t OV = half_up(dx.size(2)) * half_up(dx.size(3)) * half_up(dx.size(4));  // voxels of dy per (n, c)
  dispatch_float(dx.dtype(), "maxpool2_backward", [&](auto tag) {
    using T = decltype(tag);
    const T* pdy = dy.data<T>();
    const int32_t* pi = idx.data<int32_t>();
    T* pdx = dx.data<T>();
#pragma omp parallel for schedule(static) if (dx.numel() > 65536)
    for (int64_t v = 0; v < NC; ++v) {
      T* out = pdx + v * V;
      std::fill(out, out + V, T(0));
      for (int64_t o = v * OV; o < (v + 1) * OV; ++o) out[pi[o]] += pdy[o];
    }
  });
}

void CpuBackend::upsample2_forward(const Tensor& x, Tensor& y) {
  const int64_t NC = x.size(0) * x.size(1), X = x.size(2), Y = x.size(3), Z = x.size(4);
  dispatch_float(x.dtype(), "upsample2", [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.data<T>();
    T* py = y.data<T>();
#pragma omp parallel for schedule(static) if (y.numel() > 65536)
    for (int64_t v = 0; v < NC * 2 * X; ++v) {  // one output x-plane each
      const int64_t nc = v / (2 * X), ox = v % (2 * X);
      const T* in = px + (nc * X + ox / 2) * Y * Z;
      T* out = py + v * 4 * Y * Z;
      for (int64_t oy = 0; oy < 2 * Y; ++oy, out += 2 * Z) {
        const T* row = in + (oy / 2) * Z;
        for (int64_t oz = 0; oz < 2 * Z; ++oz) out[oz] = row[oz / 2];
      }
    }
  });
}

void CpuBackend::upsample2_backward(const Tensor& dy, Tensor& dx) {
  const int64_t NC = dx.size(0) * dx.size(1), X = dx.size(2), Y = dx.size(3), Z = dx.size(4);
  dispatch_float(dx.dtype(), "upsample2_backward", [&](auto tag) {
    using T = decltype(tag);
    const T* pdy = dy.data<T>();
    T* pdx = dx.data<T>();
    const int64_t OY = 2 * Y, OZ = 2 * Z;
#pragma omp parallel for schedule(static) if (dy.numel() > 65536)
    for (int64_t v = 0; v < NC * X; ++v) {  // one input x-plane each
      const T* in = pdy + v * 2 * OY * OZ;
      T* out = pdx + v * Y * Z;
      for (int64_t iy = 0; iy < Y; ++iy)
        for (int64_t iz = 0; iz < Z; ++iz) {
          const T* b = in + (2 * iy) * OZ + 2 * iz;
          out[iy * Z + iz] = b[0] + b[1] + b[OZ] + b[OZ + 1] + b[OY * OZ] + b[OY * OZ + 1] + b[OY * OZ + OZ] +
                             b[OY * OZ + OZ + 1];
        }
    }
  });
}

namespace {
// Copies the box between a big volume and a small one (the crop), in either direction, row by row.
template <class T>
void copy_box(const Tensor& big, const Tensor& small, const int64_t o[3], bool to_small) {
  const int64_t NC = big.size(0) * big.size(1), X = big.size(2), Y = big.size(3), Z = big.size(4);
  const int64_t x = small.size(2), y = small.size(3), z = small.size(4);
  T* pb = big.data<T>();
  T* ps = small.data<T>();
#pragma omp parallel for schedule(static) if (big.numel() > 65536)
  for (int64_t v = 0; v < NC * x; ++v) {
    const int64_t nc = v / x, ix = v % x;
    for (int64_t iy = 0; iy < y; ++iy) {
      T* b = pb + ((nc * X + ix + o[0]) * Y + iy + o[1]) * Z + o[2];
      T* s = ps + (v * y + iy) * z;
      if (to_small) std::memcpy(s, b, size_t(z) * sizeof(T));
      else std::memcpy(b, s, size_t(z) * sizeof(T));
    }
  }
}
}  // namespace

void CpuBackend::crop_forward(const Tensor& x, Tensor& y, const int64_t offset[3]) {
  dispatch_float(x.dtype(), "crop", [&](auto tag) { copy_box<decltype(tag)>(x, y, offset, true); });
}

void CpuBackend::crop_backward(const Tensor& dy, Tensor& dx, const int64_t offset[3]) {
  fill(dx, 0.0);
  dispatch_float(dx.dtype(), "crop_backward", [&](auto tag) { copy_box<decltype(tag)>(dx, dy, offset, false); });
}

void CpuBackend::copy_channels(const Tensor& src, Tensor& dst, int64_t c0, bool reverse) {
  const int64_t outer = src.size(0), Cs = src.size(1), Cd = dst.size(1);
  const int64_t inner = Cs == 0 || outer == 0 ? 0 : src.numel() / (outer * Cs);
  const size_t es = dtype_size(src.dtype()), run = size_t(Cs * inner) * es;
  char* ps = static_cast<char*>(src.raw());
  char* pd = static_cast<char*>(dst.raw()) + size_t(c0 * inner) * es;
#pragma omp parallel for schedule(static) if (outer > 1 && run > 65536)
  for (int64_t n = 0; n < outer; ++n) {
    char* s = ps + size_t(n) * run;
    char* d = pd + size_t(n * Cd * inner) * es;
    if (reverse) std::memcpy(s, d, run);
    else std::memcpy(d, s, run);
  }
}

}  // namespace hdssl
