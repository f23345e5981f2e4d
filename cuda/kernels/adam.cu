// Adam on one parameter tensor, one thread per element, in the operation order of PyTorch's single-tensor
// Adam and of the CPU backend (engine/cpu/optim.cpp):
//   g = grad * grad_scale;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// The bias corrections are computed once on the host in double; the update itself runs in T.
#include "cuda/kernels/common.cuh"
#include "cuda/kernels/kernels.h"

namespace hdssl::cuda::kernels {

template <class T>
__global__ void adam_kernel(T* param, const T* grad, T* m, T* v, int64_t n, T step_size, T b1, T b2, T eps,
                            T bc2_sqrt, T scale) {
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
void adam_step(T* param, const T* grad, T* m, T* v, int64_t n, double lr, double beta1, double beta2, double eps,
               double bias_correction1, double bias_correction2, double grad_scale) {
  if (n == 0) return;
  adam_kernel<<<grid_for(n), kThreads, 0, stream()>>>(param, grad, m, v, n, T(lr / bias_correction1), T(beta1),
                                                      T(beta2), T(eps), T(sqrt(bias_correction2)), T(grad_scale));
  cudaCheckLaunch();
}

template void adam_step<float>(float*, const float*, float*, float*, int64_t, double, double, double, double, double,
                               double, double);
template void adam_step<double>(double*, const double*, double*, double*, int64_t, double, double, double, double,
                                double, double, double);

}  // namespace hdssl::cuda::kernels
