// Adam on one parameter tensor, one thread per element, in the operation order of PyTorch's single-tensor
// Adam and of the CPU backend (engine/cpu/optim.cpp):
//   g = grad * grad_scale;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// The bias corrections are computed once on the host in double; the update itself runs in T. The gradient
// factor may live on the device (`scale`, the clip factor of clip_scale below): then no host read of the
// gradient norm is needed between the backward pass and the update.
#include "cuda/kernels/common.cuh"
#include "cuda/kernels/kernels.h"

namespace hdssl::cuda::kernels {

// The update both kernels below run, once their step size and bias correction are known.
template <class T>
__device__ void adam_update(T* param, const T* grad, T* m, T* v, int64_t n, T step_size, T b1, T b2, T eps,
                            T bc2_sqrt, T host_scale, const T* dev_scale) {
  const T scale = dev_scale ? host_scale * *dev_scale : host_scale;
  for (int64_t i = thread_index(); i < n; i += thread_stride()) {
    const T g = grad[i] * scale;
    const T mi = m[i] * b1 + g * (T(1) - b1);
    const T vi = v[i] * b2 + (T(1) - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] -= step_size * (mi / (sqrt(vi) / bc2_sqrt + eps));
  }
}

template <class T>
__global__ void adam_kernel(T* param, const T* grad, T* m, T* v, int64_t n, T step_size, T b1, T b2, T eps,
                            T bc2_sqrt, T host_scale, const T* dev_scale) {
  adam_update(param, grad, m, v, n, step_size, b1, b2, eps, bc2_sqrt, host_scale, dev_scale);
}

template <class T>
void adam_step(T* param, const T* grad, T* m, T* v, int64_t n, double lr, double beta1, double beta2, double eps,
               double bias_correction1, double bias_correction2, double grad_scale, const T* scale) {
  if (n == 0) return;
  adam_kernel<<<grid_for(n), kThreads, 0, stream()>>>(param, grad, m, v, n, T(lr / bias_correction1), T(beta1),
                                                      T(beta2), T(eps), T(sqrt(bias_correction2)), T(grad_scale),
                                                      scale);
  cudaCheckLaunch();
}

// The device-counted variant: the step count advances in its own one-thread kernel (so that no thread of
// the update can see it half-advanced), then each thread derives the bias corrections from it with the
// host's double formulas (device pow may differ from glibc's in the last bit of the double, which the
// rounding to T almost always hides; the CPU backend is bit-exact with its host path).
__global__ void advance_step_kernel(double* step_count) { *step_count += 1.0; }

template <class T>
__global__ void adam_counted_kernel(T* param, const T* grad, T* m, T* v, int64_t n, double lr, T b1, T b2, T eps,
                                    double beta1, double beta2, const double* step_count, T host_scale,
                                    const T* dev_scale) {
  const double t = *step_count;
  const T step_size = T(lr / (1.0 - pow(beta1, t)));
  const T bc2_sqrt = T(sqrt(1.0 - pow(beta2, t)));
  adam_update(param, grad, m, v, n, step_size, b1, b2, eps, bc2_sqrt, host_scale, dev_scale);
}

template <class T>
void adam_step_counted(T* param, const T* grad, T* m, T* v, int64_t n, double lr, double beta1, double beta2,
                       double eps, double* step_count, double grad_scale, const T* scale) {
  advance_step_kernel<<<1, 1, 0, stream()>>>(step_count);
  cudaCheckLaunch();
  if (n == 0) return;
  adam_counted_kernel<<<grid_for(n), kThreads, 0, stream()>>>(param, grad, m, v, n, lr, T(beta1), T(beta2), T(eps),
                                                              beta1, beta2, step_count, T(grad_scale), scale);
  cudaCheckLaunch();
}

// One thread: the clip factor in double (sqrt and division are IEEE-rounded in double on the device, so this
// is the host's clip_coefficient() bit for bit), stored in T. fmin would map NaN to 1 as well; written as
// std::min's rule (b < a ? b : a) to say so.
template <class T>
__global__ void clip_scale_kernel(const T* sum_squares, double max_norm, double eps, T* scale) {
  const double c = max_norm / (sqrt(double(*sum_squares)) + eps);
  *scale = T(c < 1.0 ? c : 1.0);
}

template <class T>
void clip_scale(const T* sum_squares, double max_norm, double eps, T* scale) {
  clip_scale_kernel<<<1, 1, 0, stream()>>>(sum_squares, max_norm, eps, scale);
  cudaCheckLaunch();
}

template void adam_step<float>(float*, const float*, float*, float*, int64_t, double, double, double, double, double,
                               double, double, const float*);
template void adam_step<double>(double*, const double*, double*, double*, int64_t, double, double, double, double,
                                double, double, double, const double*);
template void adam_step_counted<float>(float*, const float*, float*, float*, int64_t, double, double, double,
                                        double, double*, double, const float*);
template void adam_step_counted<double>(double*, const double*, double*, double*, int64_t, double, double, double,
                                         double, double*, double, const double*);
template void clip_scale<float>(const float*, double, double, float*);
template void clip_scale<double>(const double*, double, double, double*);

}  // namespace hdssl::cuda::kernels
