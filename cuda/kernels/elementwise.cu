// Elementwise kernels: one thread per element in a 64-bit grid-stride loop (the grid is capped at 65536
// blocks and each thread walks on by the grid's width), so one launch covers 167 M voxels and any odd size.
// Nothing clever: these are bandwidth-bound, and the plain loop is what a reader should see. Scalars
// arrive as double and are converted once to T (to float for bfloat16).
//
// bfloat16: axpby, mul, relu forward/backward, add_row_vector and the conv bias add also run on bf16
// storage, computing in float (cuda/kernels/compute_type.cuh) with the CPU's float operations in the
// CPU's order, so their bits equal the CPU backend's widened result (tests/cuda/test_bf16.cpp).
#include <type_traits>

#include "cuda/kernels/common.cuh"
#include "cuda/kernels/compute_type.cuh"
#include "cuda/kernels/kernels.h"

namespace hdssl::cuda::kernels {

// ---------------------------------------------------------------- kernels
template <class T>
__global__ void fill_kernel(T* out, int64_t n, T v) {
  for (int64_t i = thread_index(); i < n; i += thread_stride()) out[i] = v;
}

template <class Tin, class Tout>
__device__ Tout cast_one(Tin v) {
  if constexpr (std::is_same_v<Tin, bf16>) return static_cast<Tout>(float(v));
  else if constexpr (std::is_same_v<Tout, bf16>) return bf16(float(v));
  else return static_cast<Tout>(v);
}
template <class Tin, class Tout>
__global__ void cast_kernel(const Tin* x, Tout* out, int64_t n) {
  for (int64_t i = thread_index(); i < n; i += thread_stride()) out[i] = cast_one<Tin, Tout>(x[i]);
}

// For bf16 the two products and the sum are rounded separately (__fmul_rn / __fadd_rn: nvcc may not fuse
// them into one FMA), as the CPU build computes them; float and double keep nvcc's default.
template <class T>
__global__ void axpby_kernel(compute_t<T> a, const T* x, compute_t<T> b, const T* y, T* out, int64_t n) {
  for (int64_t i = thread_index(); i < n; i += thread_stride()) {
    if constexpr (std::is_same_v<T, bf16>)
      out[i] = narrow<T>(__fadd_rn(__fmul_rn(a, widen(x[i])), __fmul_rn(b, widen(y[i]))));
    else
      out[i] = a * x[i] + b * y[i];
  }
}

template <class T>
__global__ void mul_kernel(const T* x, const T* y, T* out, int64_t n) {
  for (int64_t i = thread_index(); i < n; i += thread_stride()) out[i] = narrow<T>(widen(x[i]) * widen(y[i]));
}

template <class T>
__global__ void relu_forward_kernel(const T* x, T* y, int64_t n) {
  using C = compute_t<T>;
  for (int64_t i = thread_index(); i < n; i += thread_stride()) {
    const C v = widen(x[i]);
    y[i] = narrow<T>((v > C(0) || v != v) ? v : C(0));  // NaN passes, as in PyTorch
  }
}

template <class T>
__global__ void relu_backward_kernel(const T* y, const T* dy, T* dx, int64_t n) {
  using C = compute_t<T>;
  for (int64_t i = thread_index(); i < n; i += thread_stride())
    dx[i] = narrow<T>(widen(y[i]) > C(0) ? widen(dy[i]) : C(0));
}

template <class T>
__global__ void sigmoid_forward_kernel(const T* x, T* y, int64_t n) {
  for (int64_t i = thread_index(); i < n; i += thread_stride()) {
    const T v = x[i];
    if (v >= T(0)) {  // two branches so exp never overflows (the CPU's formula)
      y[i] = T(1) / (T(1) + exp(-v));
    } else {
      const T e = exp(v);
      y[i] = e / (T(1) + e);
    }
  }
}

template <class T>
__global__ void sigmoid_backward_kernel(const T* y, const T* dy, T* dx, int64_t n) {
  for (int64_t i = thread_index(); i < n; i += thread_stride()) dx[i] = dy[i] * y[i] * (T(1) - y[i]);
}

template <class T>
__global__ void add_row_vector_kernel(const T* x, const T* v, T* out, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  for (int64_t i = thread_index(); i < n; i += thread_stride()) out[i] = narrow<T>(widen(x[i]) + widen(v[i % cols]));
}

// y[o, c, i] += b[c] on y viewed as [outer, C, inner] (the bf16 convolution's bias; float and double
// use cudnnAddTensor).
template <class T>
__global__ void add_channel_bias_kernel(T* y, const T* b, int64_t C, int64_t inner, int64_t n, bool small) {
  for (int64_t i = thread_index(); i < n; i += thread_stride())
    y[i] = narrow<T>(widen(y[i]) + widen(b[channel_of(i, inner, C, small)]));
}

// ---------------------------------------------------------------- launchers
template <class T>
void fill(T* out, int64_t n, double value) {
  if (n == 0) return;
  fill_kernel<<<grid_for(n), kThreads, 0, stream()>>>(out, n, T(value));
  cudaCheckLaunch();
}

template <class Tin, class Tout>
void cast(const Tin* x, Tout* out, int64_t n) {
  if (n == 0) return;
  cast_kernel<<<grid_for(n), kThreads, 0, stream()>>>(x, out, n);
  cudaCheckLaunch();
}

template <class T>
void axpby(double a, const T* x, double b, const T* y, T* out, int64_t n) {
  if (n == 0) return;
  axpby_kernel<T><<<grid_for(n), kThreads, 0, stream()>>>(compute_t<T>(a), x, compute_t<T>(b), y, out, n);
  cudaCheckLaunch();
}

template <class T>
void mul(const T* x, const T* y, T* out, int64_t n) {
  if (n == 0) return;
  mul_kernel<<<grid_for(n), kThreads, 0, stream()>>>(x, y, out, n);
  cudaCheckLaunch();
}

template <class T>
void relu_forward(const T* x, T* y, int64_t n) {
  if (n == 0) return;
  relu_forward_kernel<<<grid_for(n), kThreads, 0, stream()>>>(x, y, n);
  cudaCheckLaunch();
}

template <class T>
void relu_backward(const T* y, const T* dy, T* dx, int64_t n) {
  if (n == 0) return;
  relu_backward_kernel<<<grid_for(n), kThreads, 0, stream()>>>(y, dy, dx, n);
  cudaCheckLaunch();
}

template <class T>
void sigmoid_forward(const T* x, T* y, int64_t n) {
  if (n == 0) return;
  sigmoid_forward_kernel<<<grid_for(n), kThreads, 0, stream()>>>(x, y, n);
  cudaCheckLaunch();
}

template <class T>
void sigmoid_backward(const T* y, const T* dy, T* dx, int64_t n) {
  if (n == 0) return;
  sigmoid_backward_kernel<<<grid_for(n), kThreads, 0, stream()>>>(y, dy, dx, n);
  cudaCheckLaunch();
}

template <class T>
void add_row_vector(const T* x, const T* v, T* out, int64_t rows, int64_t cols) {
  if (rows * cols == 0) return;
  add_row_vector_kernel<<<grid_for(rows * cols), kThreads, 0, stream()>>>(x, v, out, rows, cols);
  cudaCheckLaunch();
}

template <class T>
void add_channel_bias(T* y, const T* b, int64_t outer, int64_t C, int64_t inner) {
  const int64_t n = outer * C * inner;
  if (n == 0) return;
  add_channel_bias_kernel<<<grid_for(n), kThreads, 0, stream()>>>(y, b, C, inner, n, fits_u32(n));
  cudaCheckLaunch();
}

#define HDSSL_INSTANTIATE(T)                                                                            \
  template void fill<T>(T*, int64_t, double);                                                           \
  template void axpby<T>(double, const T*, double, const T*, T*, int64_t);                              \
  template void mul<T>(const T*, const T*, T*, int64_t);                                                \
  template void relu_forward<T>(const T*, T*, int64_t);                                                 \
  template void relu_backward<T>(const T*, const T*, T*, int64_t);                                      \
  template void sigmoid_forward<T>(const T*, T*, int64_t);                                              \
  template void sigmoid_backward<T>(const T*, const T*, T*, int64_t);                                   \
  template void add_row_vector<T>(const T*, const T*, T*, int64_t, int64_t);
HDSSL_INSTANTIATE(float)
HDSSL_INSTANTIATE(double)
#undef HDSSL_INSTANTIATE
template void fill<int32_t>(int32_t*, int64_t, double);
template void fill<bf16>(bf16*, int64_t, double);
// bfloat16 storage, float arithmetic (the primitives cuda/backend.cpp lists in computes_bf16)
template void axpby<bf16>(double, const bf16*, double, const bf16*, bf16*, int64_t);
template void mul<bf16>(const bf16*, const bf16*, bf16*, int64_t);
template void relu_forward<bf16>(const bf16*, bf16*, int64_t);
template void relu_backward<bf16>(const bf16*, const bf16*, bf16*, int64_t);
template void add_row_vector<bf16>(const bf16*, const bf16*, bf16*, int64_t, int64_t);
template void add_channel_bias<bf16>(bf16*, const bf16*, int64_t, int64_t, int64_t);

#define HDSSL_INSTANTIATE_CAST(A, B) template void cast<A, B>(const A*, B*, int64_t);
HDSSL_INSTANTIATE_CAST(float, float)
HDSSL_INSTANTIATE_CAST(float, double)
HDSSL_INSTANTIATE_CAST(float, int32_t)
HDSSL_INSTANTIATE_CAST(double, float)
HDSSL_INSTANTIATE_CAST(double, double)
HDSSL_INSTANTIATE_CAST(double, int32_t)
HDSSL_INSTANTIATE_CAST(int32_t, float)
HDSSL_INSTANTIATE_CAST(int32_t, double)
HDSSL_INSTANTIATE_CAST(int32_t, int32_t)
// bfloat16 <-> the others: through float (engine/bf16.h rounds to nearest even; double is rounded to float
// first, as on the CPU)
HDSSL_INSTANTIATE_CAST(bf16, bf16)
HDSSL_INSTANTIATE_CAST(bf16, float)
HDSSL_INSTANTIATE_CAST(bf16, double)
HDSSL_INSTANTIATE_CAST(bf16, int32_t)
HDSSL_INSTANTIATE_CAST(float, bf16)
HDSSL_INSTANTIATE_CAST(double, bf16)
HDSSL_INSTANTIATE_CAST(int32_t, bf16)
#undef HDSSL_INSTANTIATE_CAST

}  // namespace hdssl::cuda::kernels
