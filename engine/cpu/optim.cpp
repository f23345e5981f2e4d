// Adam on one parameter tensor, in the operation order of PyTorch's single-tensor Adam (torch 1.13):
//   g = grad * grad_scale;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// grad_scale is where gradient-norm clipping folds in (autograd/optim.h): scaling inside the update is
// the same arithmetic as scaling the gradient first, without a pass over the gradients. With a device
// scale tensor (the clip factor of clip_scale below, which never leaves the device) the factor is
// T(grad_scale) * scale[0], read once per call.
#include <algorithm>
#include <cmath>

#include "engine/cpu/cpu_backend.h"

namespace hdssl {

void CpuBackend::adam_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamArgs& a,
                           double grad_scale, const Tensor& scale_t, const Tensor& step_count) {
  // The step number: a.step, or the device counter advanced here (the same double, so the same bits).
  double t = double(a.step);
  if (step_count.defined()) t = step_count.data<double>()[0] += 1.0;
  dispatch_float(param.dtype(), "adam_step", [&](auto tag) {
    using T = decltype(tag);
    // Four distinct tensors (restrict lets the loop vectorize without run-time overlap checks).
    T* __restrict pp = param.data<T>();
    const T* __restrict pg = grad.data<T>();
    T* __restrict pm = m.data<T>();
    T* __restrict pv = v.data<T>();
    const T b1 = T(a.beta1), b2 = T(a.beta2), eps = T(a.eps);
    const T scale = scale_t.defined() ? T(grad_scale) * scale_t.data<T>()[0] : T(grad_scale);
    const T step_size = T(a.lr / (1.0 - std::pow(a.beta1, t)));
    const T bc2_sqrt = T(std::sqrt(1.0 - std::pow(a.beta2, t)));
    const int64_t n = param.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) {
      const T g = pg[i] * scale;
      const T mi = pm[i] * b1 + g * (T(1) - b1);
      const T vi = pv[i] * b2 + (T(1) - b2) * g * g;
      pm[i] = mi;
      pv[i] = vi;
      pp[i] -= step_size * (mi / (std::sqrt(vi) / bc2_sqrt + eps));
    }
  });
}

// scale = min(1, max_norm / (sqrt(sum) + eps)) in double, as the host's clip_coefficient() computes it.
void CpuBackend::clip_scale(const Tensor& sum_squares, double max_norm, double eps, Tensor& scale) {
  dispatch_float(scale.dtype(), "clip_scale", [&](auto tag) {
    using T = decltype(tag);
    const double norm = std::sqrt(double(sum_squares.data<T>()[0]));
    scale.data<T>()[0] = T(std::min(1.0, max_norm / (norm + eps)));
  });
}

}  // namespace hdssl
