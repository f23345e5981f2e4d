// Elementwise kernels: one OpenMP loop each over the flat contiguous data.
#include <cmath>

#include "engine/cpu/cpu_backend.h"

namespace hdssl {

void CpuBackend::fill(Tensor& out, double value) {
  const int64_t n = out.numel();
  if (out.dtype() == DType::I32) {
    int32_t* o = out.data<int32_t>();
    for (int64_t i = 0; i < n; ++i) o[i] = int32_t(value);
    return;
  }
  dispatch_float(out.dtype(), "fill", [&](auto tag) {
    using T = decltype(tag);
    T* o = out.data<T>();
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) o[i] = T(value);
  });
}

void CpuBackend::cast(const Tensor& x, Tensor& out) {
  const int64_t n = x.numel();
  auto convert = [&](auto* src) {
    if (out.dtype() == DType::F32) { float* o = out.data<float>(); for (int64_t i = 0; i < n; ++i) o[i] = float(src[i]); }
    else if (out.dtype() == DType::F64) { double* o = out.data<double>(); for (int64_t i = 0; i < n; ++i) o[i] = double(src[i]); }
    else { int32_t* o = out.data<int32_t>(); for (int64_t i = 0; i < n; ++i) o[i] = int32_t(src[i]); }
  };
  if (x.dtype() == DType::F32) convert(x.data<float>());
  else if (x.dtype() == DType::F64) convert(x.data<double>());
  else convert(x.data<int32_t>());
}

void CpuBackend::axpby(double a, const Tensor& x, double b, const Tensor& y, Tensor& out) {
  dispatch_float(x.dtype(), "axpby", [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.data<T>(); const T* py = y.data<T>(); T* po = out.data<T>();
    const T ta = T(a), tb = T(b);
    const int64_t n = x.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) po[i] = ta * px[i] + tb * py[i];
  });
}

void CpuBackend::mul(const Tensor& x, const Tensor& y, Tensor& out) {
  dispatch_float(x.dtype(), "mul", [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.data<T>(); const T* py = y.data<T>(); T* po = out.data<T>();
    const int64_t n = x.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) po[i] = px[i] * py[i];
  });
}

void CpuBackend::relu_forward(const Tensor& x, Tensor& y) {
  dispatch_float(x.dtype(), "relu", [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.data<T>(); T* py = y.data<T>();
    const int64_t n = x.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) py[i] = (px[i] > T(0) || px[i] != px[i]) ? px[i] : T(0);  // NaN passes, as in PyTorch
  });
}

void CpuBackend::relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  dispatch_float(y.dtype(), "relu_backward", [&](auto tag) {
    using T = decltype(tag);
    const T* py = y.data<T>(); const T* pdy = dy.data<T>(); T* pdx = dx.data<T>();
    const int64_t n = y.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
    // dy is read unconditionally: a load under the condition kept the loop scalar and branching on the
    // sign of every element (a misprediction in two); this form vectorizes to a compare and a mask.
    for (int64_t i = 0; i < n; ++i) {
      const T d = pdy[i];
      pdx[i] = py[i] > T(0) ? d : T(0);
    }
  });
}

void CpuBackend::sigmoid_forward(const Tensor& x, Tensor& y) {
  dispatch_float(x.dtype(), "sigmoid", [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.data<T>(); T* py = y.data<T>();
    const int64_t n = x.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) {
      // Two branches so exp never overflows.
      if (px[i] >= T(0)) py[i] = T(1) / (T(1) + std::exp(-px[i]));
      else { T e = std::exp(px[i]); py[i] = e / (T(1) + e); }
    }
  });
}

void CpuBackend::sigmoid_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  dispatch_float(y.dtype(), "sigmoid_backward", [&](auto tag) {
    using T = decltype(tag);
    const T* py = y.data<T>(); const T* pdy = dy.data<T>(); T* pdx = dx.data<T>();
    const int64_t n = y.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) pdx[i] = pdy[i] * py[i] * (T(1) - py[i]);
  });
}

}  // namespace hdssl
