// Elementwise kernels: one OpenMP loop each over the flat contiguous data.
#include <cmath>
#include <type_traits>

#include "engine/cpu/cpu_backend.h"

namespace hdssl {

void CpuBackend::fill(Tensor& out, double value) {
  const int64_t n = out.numel();
  if (out.dtype() == DType::I32) {
    int32_t* o = out.data<int32_t>();
    for (int64_t i = 0; i < n; ++i) o[i] = int32_t(value);
    return;
  }
  if (out.dtype() == DType::BF16) {
    bf16* o = out.data<bf16>();
    const auto v = bf16(static_cast<float>(value));
    for (int64_t i = 0; i < n; ++i) o[i] = v;
    return;
  }
  dispatch_float(out.dtype(), "fill", [&](auto tag) {
    using T = decltype(tag);
    T* o = out.data<T>();
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) o[i] = T(value);
  });
}

namespace {
// One element of a cast. bfloat16 goes through float: widening is exact, narrowing rounds to nearest
// even (engine/bf16.h); a double is first rounded to float, as PyTorch does.
template <class To, class From> To convert_one(From v) {
  if constexpr (std::is_same_v<From, bf16>) return convert_one<To>(float(v));
  else if constexpr (std::is_same_v<To, bf16>) return bf16(float(v));
  else return static_cast<To>(v);
}
template <class From, class To> void convert_all(const From* src, To* dst, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) dst[i] = convert_one<To>(src[i]);
}
template <class From> void convert_from(const From* src, Tensor& out, int64_t n) {
  switch (out.dtype()) {
    case DType::F32: return convert_all(src, out.data<float>(), n);
    case DType::F64: return convert_all(src, out.data<double>(), n);
    case DType::BF16: return convert_all(src, out.data<bf16>(), n);
    case DType::I32: return convert_all(src, out.data<int32_t>(), n);
  }
}
}  // namespace

void CpuBackend::cast(const Tensor& x, Tensor& out) {
  const int64_t n = x.numel();
  switch (x.dtype()) {
    case DType::F32: return convert_from(x.data<float>(), out, n);
    case DType::F64: return convert_from(x.data<double>(), out, n);
    case DType::BF16: return convert_from(x.data<bf16>(), out, n);
    case DType::I32: return convert_from(x.data<int32_t>(), out, n);
  }
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
