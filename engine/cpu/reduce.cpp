// Reductions. Sums accumulate in double and split the work into a fixed number of chunks, so the result
// is the same whatever the number of threads (the chunks, not the threads, define the summation order).
#include <vector>

#include "engine/cpu/cpu_backend.h"

namespace hdssl {
namespace {
constexpr int64_t kChunks = 64;

template <class T, class F>
double chunked_sum(const T* p, int64_t n, F term) {
  std::vector<double> part(kChunks, 0.0);
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t c = 0; c < kChunks; ++c) {
    const int64_t lo = n * c / kChunks, hi = n * (c + 1) / kChunks;
    double s = 0;
    for (int64_t i = lo; i < hi; ++i) s += term(double(p[i]));
    part[size_t(c)] = s;
  }
  double s = 0;
  for (double v : part) s += v;
  return s;
}
}  // namespace

void CpuBackend::sum_all(const Tensor& x, Tensor& out) {
  dispatch_float(x.dtype(), "sum_all", [&](auto tag) {
    using T = decltype(tag);
    out.data<T>()[0] = T(chunked_sum(x.data<T>(), x.numel(), [](double v) { return v; }));
  });
}

void CpuBackend::sum_squares(const Tensor& x, Tensor& out) {
  dispatch_float(x.dtype(), "sum_squares", [&](auto tag) {
    using T = decltype(tag);
    out.data<T>()[0] += T(chunked_sum(x.data<T>(), x.numel(), [](double v) { return v * v; }));
  });
}

void CpuBackend::channel_sum(const Tensor& x, Tensor& out) {
  const ChannelView v = channel_view(x);
  const int64_t outer = v.outer, C = v.C, inner = v.inner;
  dispatch_float(x.dtype(), "channel_sum", [&](auto tag) {
    using T = decltype(tag);
    const T* p = x.data<T>();
    T* o = out.data<T>();
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < C; ++c) {
      double s = 0;
      for (int64_t n = 0; n < outer; ++n) {
        const T* q = p + (n * C + c) * inner;
        for (int64_t i = 0; i < inner; ++i) s += double(q[i]);
      }
      o[c] = T(s);
    }
  });
}

}  // namespace hdssl
