// Elementwise kernels: one thread per element in a 64-bit grid-stride loop (the grid is capped at 65536
// blocks and each thread walks on by the grid's width), so one launch covers 167 M voxels and any odd size.
// Nothing clever: these are bandwidth-bound, and the plain loop is what a reader should see. Scalars
// arrive as double and are converted once to T.
#include <type_traits>

#include "cuda/kernels/common.cuh"
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

template <class T>
__global__ void axpby_kernel(T a, const T* x, T b, const T* y, T* out, int64_t n) {
  for (int64_t i = thread_index(); i < n; i += thread_stride()) out[i] = a * x[i] + b * y[i];
}

template <class T>
__global__ void mul_kernel(const T* x, const T* y, T* out, int64_t n) {
  for (int64_t i = thread_index(); i < n; i += thread_stride()) out[i] = x[i] * y[i];
}

template <class T>
__global__ void relu_forward_kernel(const T* x, T* y, int64_t n) {
  for (int64_t i = thread_index(); i < n; i += thread_stride()) y[i] = (x[i] > T(0) || x[i] != x[i]) ? x[i] : T(0);  // NaN passes, as in PyTorch
}

template <class T>
__global__ void relu_backward_kernel(const T* y, const T* dy, T* dx, int64_t n) {
  for (int64_t i = thread_index(); i < n; i += thread_stride()) dx[i] = y[i] > T(0) ? dy[i] : T(0);
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
  for (int64_t i = thread_index(); i < n; i += thread_stride()) out[i] = x[i] + v[i % cols];
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
  axpby_kernel<<<grid_for(n), kThreads, 0, stream()>>>(T(a), x, T(b), y, out, n);
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
