// Losses that return a mean as a one-element device tensor: MSE, BCE with logits, soft Dice.
//
// The means are CUB sums (in double) of a per-element term, finished by a one-thread kernel; the
// gradients are elementwise and read the upstream scalar dloss straight from device memory, so a
// training step never waits for the host. Soft Dice needs three sums per (n, k) plane: it reuses the
// per-channel partials of common.cuh with planes as "channels" (outer = 1), then one small kernel forms
// the mean of 1 - 2I / (P + G + 1) in a fixed order. Formulas as in engine/cpu/losses.cpp.
#include "cuda/kernels/common.cuh"
#include "cuda/kernels/kernels.h"

namespace hdssl::cuda::kernels {

// ---------------------------------------------------------------- functors and kernels
template <class T>
struct SquaredError {
  const T* x;
  const T* t;
  __device__ double operator()(int64_t i) const { const double d = double(x[i]) - double(t[i]); return d * d; }
};

template <class T>
struct BceTerm {  // max(x,0) - x t + log(1 + exp(-|x|)): no overflow, no log of 0
  const T* x;
  const T* t;
  __device__ double operator()(int64_t i) const {
    const double v = double(x[i]);
    return fmax(v, 0.0) - v * double(t[i]) + log1p(exp(-fabs(v)));
  }
};

template <class T>
__global__ void mean_kernel(const double* sum, int64_t n, T* out) {
  out[0] = T(sum[0] / double(n));
}

template <class T>
__global__ void mse_backward_kernel(const T* x, const T* t, const T* dloss, T* dx, int64_t n) {
  const double c = 2.0 * double(dloss[0]) / double(n);
  for (int64_t i = thread_index(); i < n; i += thread_stride()) dx[i] = T(c * (double(x[i]) - double(t[i])));
}

template <class T>
__global__ void bce_backward_kernel(const T* x, const T* t, const T* dloss, T* dx, int64_t n) {
  const double c = double(dloss[0]) / double(n);
  for (int64_t i = thread_index(); i < n; i += thread_stride()) {
    const double v = double(x[i]);
    const double sig = v >= 0 ? 1.0 / (1.0 + exp(-v)) : exp(v) / (1.0 + exp(v));
    dx[i] = T(c * (sig - double(t[i])));
  }
}

template <class T>
struct DiceTerms {  // acc = (p g, p^2, g^2)
  const T* p;
  const T* g;
  __device__ void operator()(int64_t idx, int64_t, double (&acc)[3]) const {
    const double a = double(p[idx]), b = double(g[idx]);
    acc[0] += a * b;
    acc[1] += a * a;
    acc[2] += b * b;
  }
};

// One thread: every plane's sums (kept in T like the CPU) and the mean of 1 - d, in plane order.
template <class T>
__global__ void dice_finalize_kernel(const double* partials, int chunks, int64_t planes, T* sums, T* loss) {
  double total = 0.0;
  for (int64_t c = 0; c < planes; ++c) {
    const double I = sum_chunks<3>(partials, c, chunks, 0), P = sum_chunks<3>(partials, c, chunks, 1),
                 G = sum_chunks<3>(partials, c, chunks, 2);
    sums[3 * c] = T(I);
    sums[3 * c + 1] = T(P);
    sums[3 * c + 2] = T(G);
    total += 1.0 - 2.0 * I / (P + G + 1.0);
  }
  loss[0] = T(total / double(planes));
}

template <class T>
__global__ void dice_backward_kernel(const T* p, const T* g, const T* sums, const T* dloss, T* dp, int64_t planes,
                                     int64_t inner) {
  const double c0 = -double(dloss[0]) / double(planes);
  const int64_t n = planes * inner;
  for (int64_t i = thread_index(); i < n; i += thread_stride()) {
    const int64_t c = i / inner;
    const double I = double(sums[3 * c]), den = double(sums[3 * c + 1]) + double(sums[3 * c + 2]) + 1.0;
    dp[i] = T(c0 * (2.0 / den * double(g[i]) - 4.0 * I / (den * den) * double(p[i])));
  }
}

// ---------------------------------------------------------------- launchers
template <class T>
void mse_forward(const T* x, const T* t, int64_t n, T* loss) {
  HDSSL_CHECK(n > 0) << "mse_forward: empty input";
  DeviceBuffer acc(sizeof(double));
  reduce_sum_to_double(n, SquaredError<T>{x, t}, acc.as<double>());
  mean_kernel<<<1, 1, 0, stream()>>>(acc.as<double>(), n, loss);
  cudaCheckLaunch();
}

template <class T>
void mse_backward(const T* x, const T* t, const T* dloss, T* dx, int64_t n) {
  if (n == 0) return;
  mse_backward_kernel<<<grid_for(n), kThreads, 0, stream()>>>(x, t, dloss, dx, n);
  cudaCheckLaunch();
}

template <class T>
void bce_logits_forward(const T* x, const T* t, int64_t n, T* loss) {
  HDSSL_CHECK(n > 0) << "bce_logits_forward: empty input";
  DeviceBuffer acc(sizeof(double));
  reduce_sum_to_double(n, BceTerm<T>{x, t}, acc.as<double>());
  mean_kernel<<<1, 1, 0, stream()>>>(acc.as<double>(), n, loss);
  cudaCheckLaunch();
}

template <class T>
void bce_logits_backward(const T* x, const T* t, const T* dloss, T* dx, int64_t n) {
  if (n == 0) return;
  bce_backward_kernel<<<grid_for(n), kThreads, 0, stream()>>>(x, t, dloss, dx, n);
  cudaCheckLaunch();
}

template <class T>
void soft_dice_forward(const T* p, const T* g, int64_t planes, int64_t inner, T* loss, T* sums) {
  HDSSL_CHECK(planes > 0 && inner > 0) << "soft_dice_forward: empty input (" << planes << " planes of " << inner << ")";
  const int chunks = channel_chunks(inner, planes);
  DeviceBuffer partials(sizeof(double) * 3 * size_t(planes) * size_t(chunks));
  launch_channel_partials<3>(DiceTerms<T>{p, g}, 1, planes, inner, chunks, partials.as<double>());
  dice_finalize_kernel<<<1, 1, 0, stream()>>>(partials.as<double>(), chunks, planes, sums, loss);
  cudaCheckLaunch();
}

template <class T>
void soft_dice_backward(const T* p, const T* g, const T* sums, const T* dloss, T* dp, int64_t planes, int64_t inner) {
  if (planes * inner == 0) return;
  dice_backward_kernel<<<grid_for(planes * inner), kThreads, 0, stream()>>>(p, g, sums, dloss, dp, planes, inner);
  cudaCheckLaunch();
}

#define HDSSL_INSTANTIATE(T)                                                                   \
  template void mse_forward<T>(const T*, const T*, int64_t, T*);                               \
  template void mse_backward<T>(const T*, const T*, const T*, T*, int64_t);                    \
  template void bce_logits_forward<T>(const T*, const T*, int64_t, T*);                        \
  template void bce_logits_backward<T>(const T*, const T*, const T*, T*, int64_t);             \
  template void soft_dice_forward<T>(const T*, const T*, int64_t, int64_t, T*, T*);            \
  template void soft_dice_backward<T>(const T*, const T*, const T*, const T*, T*, int64_t, int64_t);
HDSSL_INSTANTIATE(float)
HDSSL_INSTANTIATE(double)
#undef HDSSL_INSTANTIATE

}  // namespace hdssl::cuda::kernels
