// Batch normalization over every dim but 1 (x viewed as [outer, C, inner], M = outer * inner per channel).
//
// Statistics come from the deterministic per-channel partial sums of common.cuh, in double, in ONE pass
// over x: each channel's values are shifted by the channel's first value K before summing x-K and
// (x-K)^2, so var = E[(x-K)^2] - E[x-K]^2 does not cancel catastrophically even when the mean is large
// (the shifted mean is small whenever the data are concentrated around K). A per-channel finalize kernel
// turns the sums into mean / invstd / running statistics and into double coefficients (scale, shift),
// and a last elementwise pass applies them in double. The backward works the same way: one pass for
// sum(dy) and sum(dy * (x - mean)), a finalize, and dx = a*dy + b*(x - mean) + c per channel.
// Same semantics as the CPU backend: biased variance to normalize, unbiased (M / (M-1)) for the running
// variance, running = (1 - momentum) * running + momentum * batch.
//
// Fused batch norm + ReLU (+ residual r): the same statistics and finalize kernels; only the elementwise
// passes change. Forward: y = relu(T(x * scale + shift) + r), the normalized value rounded to T before r
// is added (in T) and the ReLU applied, the order of the unfused kernels (bn apply, axpby, relu). Backward:
// g = dy where y > 0, else 0 (relu_backward's rule), read in place of dy by the moments and the dx pass,
// which also writes dr = g when asked. So one pass over the activations is saved each way, and nothing
// new is stored.
#include "cuda/kernels/common.cuh"
#include "cuda/kernels/kernels.h"

namespace hdssl::cuda::kernels {

// ---------------------------------------------------------------- functors and kernels
template <class T>
struct ShiftedMoments {  // acc = (x - K, (x - K)^2) with K = the channel's first value
  const T* x;
  int64_t inner, C;
  __device__ void operator()(int64_t idx, int64_t c, double (&acc)[2]) const {
    const double d = double(x[idx]) - double(x[c * inner]);
    acc[0] += d;
    acc[1] += d * d;
  }
};

// dy, or for the fused op dy masked by the ReLU's output y (y may be null when not kMasked).
template <bool kMasked, class T>
__device__ inline T masked_grad(const T* y, const T* dy, int64_t i) {
  if (kMasked) return y[i] > T(0) ? dy[i] : T(0);
  return dy[i];
}

template <class T, bool kMasked>
struct BackwardMoments {  // acc = (g, g * (x - mean)), g = masked_grad(dy)
  const T* x;
  const T* dy;
  const T* mean;
  const T* y;
  __device__ void operator()(int64_t idx, int64_t c, double (&acc)[2]) const {
    const double g = double(masked_grad<kMasked>(y, dy, idx));
    acc[0] += g;
    acc[1] += g * (double(x[idx]) - double(mean[c]));
  }
};

// coef[c] = (scale, shift) so that y = x * scale + shift.
template <class T>
__global__ void bn_train_finalize_kernel(const double* partials, int chunks, const T* x, const T* gamma, const T* beta,
                                         T* save_mean, T* save_invstd, T* running_mean, T* running_var, double* coef,
                                         int64_t C, int64_t inner, int64_t M, double momentum, double eps) {
  for (int64_t c = thread_index(); c < C; c += thread_stride()) {
    const double k = double(x[c * inner]);
    const double d = sum_chunks<2>(partials, c, chunks, 0) / double(M);
    const double sq = sum_chunks<2>(partials, c, chunks, 1) / double(M);
    // Clamped at 0 with NaN passing: fmax(NaN, 0) would be 0, a finite invstd and running_var where the CPU's
    // two-pass variance (and PyTorch) give NaN for a channel holding a NaN or an infinity.
    const double mean = k + d, var_raw = sq - d * d, var = var_raw < 0.0 ? 0.0 : var_raw;
    const double invstd = 1.0 / sqrt(var + eps);
    save_mean[c] = T(mean);
    save_invstd[c] = T(invstd);
    running_mean[c] = T((1.0 - momentum) * double(running_mean[c]) + momentum * mean);
    const double unbiased = M > 1 ? var * double(M) / double(M - 1) : var;
    running_var[c] = T((1.0 - momentum) * double(running_var[c]) + momentum * unbiased);
    const double g = gamma ? double(gamma[c]) : 1.0, b = beta ? double(beta[c]) : 0.0;
    coef[2 * c] = invstd * g;
    coef[2 * c + 1] = b - mean * invstd * g;
  }
}

template <class T>
__global__ void bn_eval_coef_kernel(const T* gamma, const T* beta, const T* running_mean, const T* running_var,
                                    double* coef, int64_t C, double eps) {
  for (int64_t c = thread_index(); c < C; c += thread_stride()) {
    const double invstd = 1.0 / sqrt(double(running_var[c]) + eps);
    const double g = gamma ? double(gamma[c]) : 1.0, b = beta ? double(beta[c]) : 0.0;
    coef[2 * c] = invstd * g;
    coef[2 * c + 1] = b - double(running_mean[c]) * invstd * g;
  }
}

// y = x * scale + shift; with kRelu then + r (r may be null) and the ReLU (NaN passes, as relu_forward).
template <class T, bool kRelu>
__global__ void bn_apply_kernel(const T* x, const double* coef, const T* r, T* y, int64_t n, int64_t C,
                                int64_t inner, bool small) {
  for (int64_t i = thread_index(); i < n; i += thread_stride()) {
    const int64_t c = channel_of(i, inner, C, small);
    T v = T(fma(double(x[i]), coef[2 * c], coef[2 * c + 1]));
    if (kRelu) {
      if (r) v = v + r[i];
      v = (v > T(0) || v != v) ? v : T(0);
    }
    y[i] = v;
  }
}

// coef[c] = (a, b, k) so that dx = a * dy + b * (x - mean) + k.
template <class T>
__global__ void bn_backward_finalize_kernel(const double* partials, int chunks, const T* gamma, const T* invstd,
                                            T* dgamma, T* dbeta, double* coef, int64_t C, int64_t M) {
  for (int64_t c = thread_index(); c < C; c += thread_stride()) {
    const double sdy = sum_chunks<2>(partials, c, chunks, 0), sdyx = sum_chunks<2>(partials, c, chunks, 1);
    const double is = double(invstd[c]), g = gamma ? double(gamma[c]) : 1.0;
    const double dg = sdyx * is;  // sum(dy * xhat)
    if (dbeta) dbeta[c] = T(sdy);
    if (dgamma) dgamma[c] = T(dg);
    const double a = g * is;
    coef[3 * c] = a;
    coef[3 * c + 1] = -a * is * dg / double(M);
    coef[3 * c + 2] = -a * sdy / double(M);
  }
}

// dx = a * g + b * (x - mean) + k with g = masked_grad(dy); dr = g when dr is given (kMasked only).
template <class T, bool kMasked>
__global__ void bn_backward_apply_kernel(const T* x, const T* y, const T* dy, const T* mean, const double* coef,
                                         T* dx, T* dr, int64_t n, int64_t C, int64_t inner, bool small) {
  for (int64_t i = thread_index(); i < n; i += thread_stride()) {
    const int64_t c = channel_of(i, inner, C, small);
    const T g = masked_grad<kMasked>(y, dy, i);
    dx[i] = T(coef[3 * c] * double(g) + coef[3 * c + 1] * (double(x[i]) - double(mean[c])) + coef[3 * c + 2]);
    if (kMasked && dr) dr[i] = g;
  }
}

// ---------------------------------------------------------------- shared launch sequences
// kRelu / kMasked false: the plain batch norm (r, y, dr unused); true: the fused op.
template <class T, bool kRelu>
void forward_train(const T* x, const T* gamma, const T* beta, const T* r, T* y, T* save_mean, T* save_invstd,
                   T* running_mean, T* running_var, int64_t outer, int64_t C, int64_t inner, double momentum,
                   double eps, const char* op) {
  const int64_t M = outer * inner, n = M * C;
  HDSSL_CHECK(M > 0) << op << ": no values per channel";
  if (C == 0) return;  // nothing to write (and channel_chunks divides by C, a grid.y of 0 is refused)
  const int chunks = channel_chunks(M, C);
  DeviceBuffer partials(sizeof(double) * 2 * size_t(C) * size_t(chunks)), coef(sizeof(double) * 2 * size_t(C));
  launch_channel_partials<2>(ShiftedMoments<T>{x, inner, C}, outer, C, inner, chunks, partials.as<double>());
  bn_train_finalize_kernel<<<grid_for(C), kThreads, 0, stream()>>>(partials.as<double>(), chunks, x, gamma, beta,
                                                                   save_mean, save_invstd, running_mean, running_var,
                                                                   coef.as<double>(), C, inner, M, momentum, eps);
  cudaCheckLaunch();
  bn_apply_kernel<T, kRelu><<<grid_for(n), kThreads, 0, stream()>>>(x, coef.as<double>(), r, y, n, C, inner,
                                                                    fits_u32(n));
  cudaCheckLaunch();
}

template <class T, bool kRelu>
void forward_eval(const T* x, const T* gamma, const T* beta, const T* r, const T* running_mean,
                  const T* running_var, T* y, int64_t outer, int64_t C, int64_t inner, double eps) {
  const int64_t n = outer * C * inner;
  if (n == 0) return;
  DeviceBuffer coef(sizeof(double) * 2 * size_t(C));
  bn_eval_coef_kernel<<<grid_for(C), kThreads, 0, stream()>>>(gamma, beta, running_mean, running_var,
                                                              coef.as<double>(), C, eps);
  cudaCheckLaunch();
  bn_apply_kernel<T, kRelu><<<grid_for(n), kThreads, 0, stream()>>>(x, coef.as<double>(), r, y, n, C, inner,
                                                                    fits_u32(n));
  cudaCheckLaunch();
}

template <class T, bool kMasked>
void backward(const T* x, const T* y, const T* dy, const T* gamma, const T* save_mean, const T* save_invstd, T* dx,
              T* dgamma, T* dbeta, T* dr, int64_t outer, int64_t C, int64_t inner) {
  const int64_t M = outer * inner, n = M * C;
  if (C == 0) return;  // nothing to write (and channel_chunks divides by C, a grid.y of 0 is refused)
  if (M == 0) {        // empty sums, as on the CPU: dgamma = dbeta = +0 (all bits 0), dx and dr empty
    if (dgamma) cudaCheck(cudaMemsetAsync(dgamma, 0, sizeof(T) * size_t(C), stream()));
    if (dbeta) cudaCheck(cudaMemsetAsync(dbeta, 0, sizeof(T) * size_t(C), stream()));
    return;
  }
  const int chunks = channel_chunks(M, C);
  DeviceBuffer partials(sizeof(double) * 2 * size_t(C) * size_t(chunks)), coef(sizeof(double) * 3 * size_t(C));
  launch_channel_partials<2>(BackwardMoments<T, kMasked>{x, dy, save_mean, y}, outer, C, inner, chunks,
                             partials.as<double>());
  bn_backward_finalize_kernel<<<grid_for(C), kThreads, 0, stream()>>>(partials.as<double>(), chunks, gamma,
                                                                      save_invstd, dgamma, dbeta, coef.as<double>(),
                                                                      C, M);
  cudaCheckLaunch();
  bn_backward_apply_kernel<T, kMasked><<<grid_for(n), kThreads, 0, stream()>>>(
      x, y, dy, save_mean, coef.as<double>(), dx, dr, n, C, inner, fits_u32(n));
  cudaCheckLaunch();
}

// ---------------------------------------------------------------- launchers
template <class T>
void batchnorm_forward_train(const T* x, const T* gamma, const T* beta, T* y, T* save_mean, T* save_invstd,
                             T* running_mean, T* running_var, int64_t outer, int64_t C, int64_t inner,
                             double momentum, double eps) {
  forward_train<T, false>(x, gamma, beta, nullptr, y, save_mean, save_invstd, running_mean, running_var, outer, C,
                          inner, momentum, eps, "batchnorm_forward_train");
}

template <class T>
void batchnorm_forward_eval(const T* x, const T* gamma, const T* beta, const T* running_mean, const T* running_var,
                            T* y, int64_t outer, int64_t C, int64_t inner, double eps) {
  forward_eval<T, false>(x, gamma, beta, nullptr, running_mean, running_var, y, outer, C, inner, eps);
}

template <class T>
void batchnorm_backward(const T* x, const T* dy, const T* gamma, const T* save_mean, const T* save_invstd, T* dx,
                        T* dgamma, T* dbeta, int64_t outer, int64_t C, int64_t inner) {
  backward<T, false>(x, nullptr, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta, nullptr, outer, C, inner);
}

template <class T>
void batchnorm_relu_forward_train(const T* x, const T* gamma, const T* beta, const T* r, T* y, T* save_mean,
                                  T* save_invstd, T* running_mean, T* running_var, int64_t outer, int64_t C,
                                  int64_t inner, double momentum, double eps) {
  forward_train<T, true>(x, gamma, beta, r, y, save_mean, save_invstd, running_mean, running_var, outer, C, inner,
                         momentum, eps, "batchnorm_relu_forward_train");
}

template <class T>
void batchnorm_relu_forward_eval(const T* x, const T* gamma, const T* beta, const T* r, const T* running_mean,
                                 const T* running_var, T* y, int64_t outer, int64_t C, int64_t inner, double eps) {
  forward_eval<T, true>(x, gamma, beta, r, running_mean, running_var, y, outer, C, inner, eps);
}

template <class T>
void batchnorm_relu_backward(const T* x, const T* y, const T* dy, const T* gamma, const T* save_mean,
                             const T* save_invstd, T* dx, T* dgamma, T* dbeta, T* dr, int64_t outer, int64_t C,
                             int64_t inner) {
  backward<T, true>(x, y, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta, dr, outer, C, inner);
}

#define HDSSL_INSTANTIATE(T)                                                                                    \
  template void batchnorm_forward_train<T>(const T*, const T*, const T*, T*, T*, T*, T*, T*, int64_t, int64_t,  \
                                           int64_t, double, double);                                            \
  template void batchnorm_forward_eval<T>(const T*, const T*, const T*, const T*, const T*, T*, int64_t,       \
                                          int64_t, int64_t, double);                                            \
  template void batchnorm_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, int64_t,   \
                                      int64_t, int64_t);                                                        \
  template void batchnorm_relu_forward_train<T>(const T*, const T*, const T*, const T*, T*, T*, T*, T*, T*,     \
                                                int64_t, int64_t, int64_t, double, double);                     \
  template void batchnorm_relu_forward_eval<T>(const T*, const T*, const T*, const T*, const T*, const T*, T*,  \
                                               int64_t, int64_t, int64_t, double);                              \
  template void batchnorm_relu_backward<T>(const T*, const T*, const T*, const T*, const T*, const T*, T*, T*,  \
                                           T*, T*, int64_t, int64_t, int64_t);
HDSSL_INSTANTIATE(float)
HDSSL_INSTANTIATE(double)
#undef HDSSL_INSTANTIATE

}  // namespace hdssl::cuda::kernels
