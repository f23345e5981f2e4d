// Max-pool 2x2x2 (ceil mode), nearest upsampling x2 and cropping: pure data movement on [N*C] volumes.
//
// The trick that keeps every backward free of atomics: each kernel runs one thread per element of the
// tensor it writes. Max-pool windows do not overlap (stride 2), so the backward thread of input voxel v
// finds its window o = v/2 and takes dy[o] only when idx[o] names v; the upsample backward thread of dx
// sums its 2x2x2 block of dy; the crop backward thread writes dy inside the box and 0 outside. Every
// output element is written exactly once, so no separate zero-fill is needed.
// The window is scanned x, then y, then z, keeping the first maximum (strict >) and letting any NaN win
// (the last one seen), exactly as the CPU backend does.
//
// bfloat16: every kernel here also runs on bf16 storage (the max-pool compares, the upsample backward sums
// its 8 values in float in the CPU's order, starting from the first value; the copies widen and narrow,
// which keeps every value and makes a NaN quiet as the CPU's widening does), so the bits equal the CPU's.
#include "cuda/kernels/common.cuh"
#include "cuda/kernels/compute_type.cuh"
#include "cuda/kernels/kernels.h"

namespace hdssl::cuda::kernels {

// ---------------------------------------------------------------- kernels
template <class T>
__global__ void maxpool2_forward_kernel(const T* x, T* y, int32_t* idx, int64_t planes, int64_t X, int64_t Y,
                                        int64_t Z, int64_t OX, int64_t OY, int64_t OZ) {
  const int64_t n = planes * OX * OY * OZ;
  for (int64_t i = thread_index(); i < n; i += thread_stride()) {
    int64_t r = i;
    const int64_t oz = r % OZ; r /= OZ;
    const int64_t oy = r % OY; r /= OY;
    const int64_t ox = r % OX;
    const int64_t p = r / OX;
    const T* in = x + p * X * Y * Z;
    compute_t<T> best = 0;
    int64_t arg = -1;
    for (int64_t a = 2 * ox; a < 2 * ox + 2 && a < X; ++a)
      for (int64_t b = 2 * oy; b < 2 * oy + 2 && b < Y; ++b)
        for (int64_t c = 2 * oz; c < 2 * oz + 2 && c < Z; ++c) {
          const int64_t j = (a * Y + b) * Z + c;
          const compute_t<T> v = widen(in[j]);
          if (arg < 0 || v > best || v != v) {  // first max (strict >); a NaN wins, as on the CPU
            best = v;
            arg = j;
          }
        }
    y[i] = narrow<T>(best);
    idx[i] = int32_t(arg);
  }
}

template <class T>
__global__ void maxpool2_backward_kernel(const T* dy, const int32_t* idx, T* dx, int64_t planes, int64_t X, int64_t Y,
                                         int64_t Z, int64_t OX, int64_t OY, int64_t OZ) {
  const int64_t n = planes * X * Y * Z;
  for (int64_t i = thread_index(); i < n; i += thread_stride()) {
    const int64_t local = i % (X * Y * Z), p = i / (X * Y * Z);
    const int64_t z = local % Z, y = (local / Z) % Y, x = local / (Y * Z);
    const int64_t o = ((p * OX + x / 2) * OY + y / 2) * OZ + z / 2;
    dx[i] = narrow<T>(idx[o] == local ? widen(dy[o]) : compute_t<T>(0));
  }
}

template <class T>
__global__ void upsample2_forward_kernel(const T* x, T* y, int64_t planes, int64_t X, int64_t Y, int64_t Z) {
  const int64_t X2 = 2 * X, Y2 = 2 * Y, Z2 = 2 * Z, n = planes * X2 * Y2 * Z2;
  for (int64_t i = thread_index(); i < n; i += thread_stride()) {
    int64_t r = i;
    const int64_t z = r % Z2; r /= Z2;
    const int64_t yy = r % Y2; r /= Y2;
    const int64_t xx = r % X2;
    const int64_t p = r / X2;
    y[i] = narrow<T>(widen(x[((p * X + xx / 2) * Y + yy / 2) * Z + z / 2]));
  }
}

template <class T>
__global__ void upsample2_backward_kernel(const T* dy, T* dx, int64_t planes, int64_t X, int64_t Y, int64_t Z) {
  const int64_t Y2 = 2 * Y, Z2 = 2 * Z, n = planes * X * Y * Z;
  for (int64_t i = thread_index(); i < n; i += thread_stride()) {
    int64_t r = i;
    const int64_t z = r % Z; r /= Z;
    const int64_t yy = r % Y; r /= Y;
    const int64_t xx = r % X;
    const int64_t p = r / X;
    const T* base = dy + ((p * 2 * X + 2 * xx) * Y2 + 2 * yy) * Z2 + 2 * z;
    compute_t<T> s = widen(base[0]);  // then the other 7 in the CPU's order (x, then y, then z)
    for (int a = 0; a < 2; ++a)
      for (int b = 0; b < 2; ++b)
        for (int c = (a == 0 && b == 0) ? 1 : 0; c < 2; ++c) s += widen(base[(a * Y2 + b) * Z2 + c]);
    dx[i] = narrow<T>(s);
  }
}

struct Box {
  int64_t X, Y, Z;     // the big volume
  int64_t B0, B1, B2;  // the box
  int64_t o0, o1, o2;  // its offset
};

template <class T>
__global__ void crop_forward_kernel(const T* x, T* y, int64_t planes, Box b) {
  const int64_t n = planes * b.B0 * b.B1 * b.B2;
  for (int64_t i = thread_index(); i < n; i += thread_stride()) {
    int64_t r = i;
    const int64_t k = r % b.B2; r /= b.B2;
    const int64_t j = r % b.B1; r /= b.B1;
    const int64_t l = r % b.B0;
    const int64_t p = r / b.B0;
    y[i] = narrow<T>(widen(x[((p * b.X + l + b.o0) * b.Y + j + b.o1) * b.Z + k + b.o2]));
  }
}

template <class T>
__global__ void crop_backward_kernel(const T* dy, T* dx, int64_t planes, Box b) {
  const int64_t n = planes * b.X * b.Y * b.Z;
  for (int64_t i = thread_index(); i < n; i += thread_stride()) {
    int64_t r = i;
    const int64_t k = r % b.Z - b.o2; r /= b.Z;
    const int64_t j = r % b.Y - b.o1; r /= b.Y;
    const int64_t l = r % b.X - b.o0;
    const int64_t p = r / b.X;
    const bool inside = l >= 0 && l < b.B0 && j >= 0 && j < b.B1 && k >= 0 && k < b.B2;
    dx[i] = narrow<T>(inside ? widen(dy[((p * b.B0 + l) * b.B1 + j) * b.B2 + k]) : compute_t<T>(0));
  }
}

// ---------------------------------------------------------------- launchers
template <class T>
void maxpool2_forward(const T* x, T* y, int32_t* idx, int64_t planes, int64_t X, int64_t Y, int64_t Z) {
  const int64_t OX = (X + 1) / 2, OY = (Y + 1) / 2, OZ = (Z + 1) / 2, n = planes * OX * OY * OZ;
  if (n == 0) return;
  maxpool2_forward_kernel<<<grid_for(n), kThreads, 0, stream()>>>(x, y, idx, planes, X, Y, Z, OX, OY, OZ);
  cudaCheckLaunch();
}

template <class T>
void maxpool2_backward(const T* dy, const int32_t* idx, T* dx, int64_t planes, int64_t X, int64_t Y, int64_t Z) {
  const int64_t n = planes * X * Y * Z;
  if (n == 0) return;
  maxpool2_backward_kernel<<<grid_for(n), kThreads, 0, stream()>>>(dy, idx, dx, planes, X, Y, Z, (X + 1) / 2,
                                                                   (Y + 1) / 2, (Z + 1) / 2);
  cudaCheckLaunch();
}

template <class T>
void upsample2_forward(const T* x, T* y, int64_t planes, int64_t X, int64_t Y, int64_t Z) {
  const int64_t n = planes * 8 * X * Y * Z;
  if (n == 0) return;
  upsample2_forward_kernel<<<grid_for(n), kThreads, 0, stream()>>>(x, y, planes, X, Y, Z);
  cudaCheckLaunch();
}

template <class T>
void upsample2_backward(const T* dy, T* dx, int64_t planes, int64_t X, int64_t Y, int64_t Z) {
  const int64_t n = planes * X * Y * Z;
  if (n == 0) return;
  upsample2_backward_kernel<<<grid_for(n), kThreads, 0, stream()>>>(dy, dx, planes, X, Y, Z);
  cudaCheckLaunch();
}

template <class T>
void crop_forward(const T* x, T* y, int64_t planes, const int64_t xdims[3], const int64_t box[3], const int64_t o[3]) {
  const Box b{xdims[0], xdims[1], xdims[2], box[0], box[1], box[2], o[0], o[1], o[2]};
  const int64_t n = planes * b.B0 * b.B1 * b.B2;
  if (n == 0) return;
  crop_forward_kernel<<<grid_for(n), kThreads, 0, stream()>>>(x, y, planes, b);
  cudaCheckLaunch();
}

template <class T>
void crop_backward(const T* dy, T* dx, int64_t planes, const int64_t xdims[3], const int64_t box[3], const int64_t o[3]) {
  const Box b{xdims[0], xdims[1], xdims[2], box[0], box[1], box[2], o[0], o[1], o[2]};
  const int64_t n = planes * b.X * b.Y * b.Z;
  if (n == 0) return;
  crop_backward_kernel<<<grid_for(n), kThreads, 0, stream()>>>(dy, dx, planes, b);
  cudaCheckLaunch();
}

#define HDSSL_INSTANTIATE(T)                                                                                   \
  template void maxpool2_forward<T>(const T*, T*, int32_t*, int64_t, int64_t, int64_t, int64_t);               \
  template void maxpool2_backward<T>(const T*, const int32_t*, T*, int64_t, int64_t, int64_t, int64_t);        \
  template void upsample2_forward<T>(const T*, T*, int64_t, int64_t, int64_t, int64_t);                        \
  template void upsample2_backward<T>(const T*, T*, int64_t, int64_t, int64_t, int64_t);                       \
  template void crop_forward<T>(const T*, T*, int64_t, const int64_t[3], const int64_t[3], const int64_t[3]);  \
  template void crop_backward<T>(const T*, T*, int64_t, const int64_t[3], const int64_t[3], const int64_t[3]);
HDSSL_INSTANTIATE(float)
HDSSL_INSTANTIATE(double)
HDSSL_INSTANTIATE(bf16)
#undef HDSSL_INSTANTIATE

}  // namespace hdssl::cuda::kernels
