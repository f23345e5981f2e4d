// Reductions. Sums accumulate in double and split the work into a fixed number of chunks, so the result
// is the same whatever the number of threads (the chunks, not the threads, define the summation order).
// Inside a chunk (and a channel of channel_sum), 8 partial sums by index mod 8 keep the adds independent.
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
    constexpr int kLanes = 8;  // independent partial sums: one chain of double adds is latency-bound
    double s[kLanes] = {};
    int64_t i = lo;
    for (; i + kLanes <= hi; i += kLanes)
      for (int l = 0; l < kLanes; ++l) s[l] += term(double(p[i + l]));
    for (; i < hi; ++i) s[(i - lo) % kLanes] += term(double(p[i]));
    double total = 0;
    for (double v : s) total += v;
    part[size_t(c)] = total;
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
      // kLanes independent partial sums (lane = i % kLanes), added in a fixed order at the end: one
      // serial chain of double adds would be latency-bound (~4 cycles per element).
      constexpr int kLanes = 8;
      double s[kLanes] = {};
      for (int64_t n = 0; n < outer; ++n) {
        const T* q = p + (n * C + c) * inner;
        int64_t i = 0;
        for (; i + kLanes <= inner; i += kLanes)
          for (int l = 0; l < kLanes; ++l) s[l] += double(q[i + l]);
        for (; i < inner; ++i) s[i % kLanes] += double(q[i]);
      }
      double total = 0;
      for (double v : s) total += v;
      o[c] = T(total);
    }
  });
}

}  // namespace hdssl
