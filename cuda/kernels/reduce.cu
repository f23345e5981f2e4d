// Reductions. Whole-tensor sums go through CUB's device-wide TransformReduce over an index range: the
// transform reads element i and widens it to double (squaring it for sum_squares), CUB sums in double
// into a one-element scratch, and a one-thread kernel writes (or adds) the result in T. Nothing leaves
// the device, so gradient-norm clipping needs no host round trip. Per-channel sums (bias gradients) use
// the deterministic chunked partials of common.cuh.
#include "cuda/kernels/common.cuh"
#include "cuda/kernels/kernels.h"

namespace hdssl::cuda::kernels {

// ---------------------------------------------------------------- device functors and kernels
template <class T>
struct AsDouble {
  const T* x;
  __device__ double operator()(int64_t i) const { return double(x[i]); }
};

template <class T>
struct SquareAsDouble {
  const T* x;
  __device__ double operator()(int64_t i) const { const double v = double(x[i]); return v * v; }
};

template <class T>
__global__ void store_scalar_kernel(const double* acc, T* out, bool accumulate) {
  out[0] = accumulate ? T(double(out[0]) + acc[0]) : T(acc[0]);
}

template <class T>
struct ChannelValue {
  const T* x;
  __device__ void operator()(int64_t idx, int64_t, double (&acc)[1]) const { acc[0] += double(x[idx]); }
};

template <class T>
__global__ void channel_sum_finalize_kernel(const double* partials, int chunks, int64_t C, T* out) {
  for (int64_t c = thread_index(); c < C; c += thread_stride()) out[c] = T(sum_chunks<1>(partials, c, chunks, 0));
}

// ---------------------------------------------------------------- launchers
template <class T>
void sum_all(const T* x, int64_t n, T* out) {
  DeviceBuffer acc(sizeof(double));
  if (n == 0) {
    fill<T>(out, 1, 0.0);
    return;
  }
  reduce_sum_to_double(n, AsDouble<T>{x}, acc.as<double>());
  store_scalar_kernel<<<1, 1, 0, stream()>>>(acc.as<double>(), out, false);
  cudaCheckLaunch();
}

template <class T>
void sum_squares_accumulate(const T* x, int64_t n, T* out) {
  if (n == 0) return;
  DeviceBuffer acc(sizeof(double));
  reduce_sum_to_double(n, SquareAsDouble<T>{x}, acc.as<double>());
  store_scalar_kernel<<<1, 1, 0, stream()>>>(acc.as<double>(), out, true);
  cudaCheckLaunch();
}

template <class T>
void channel_sum(const T* x, int64_t outer, int64_t C, int64_t inner, T* out) {
  if (C == 0) return;
  if (outer * inner == 0) {
    fill<T>(out, C, 0.0);
    return;
  }
  const int chunks = channel_chunks(outer * inner, C);
  DeviceBuffer partials(sizeof(double) * size_t(C) * size_t(chunks));
  launch_channel_partials<1>(ChannelValue<T>{x}, outer, C, inner, chunks, partials.as<double>());
  channel_sum_finalize_kernel<<<grid_for(C), kThreads, 0, stream()>>>(partials.as<double>(), chunks, C, out);
  cudaCheckLaunch();
}

#define HDSSL_INSTANTIATE(T)                                                    \
  template void sum_all<T>(const T*, int64_t, T*);                              \
  template void sum_squares_accumulate<T>(const T*, int64_t, T*);               \
  template void channel_sum<T>(const T*, int64_t, int64_t, int64_t, T*);
HDSSL_INSTANTIATE(float)
HDSSL_INSTANTIATE(double)
#undef HDSSL_INSTANTIATE

}  // namespace hdssl::cuda::kernels
