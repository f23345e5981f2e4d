// Batch normalization over every dim but 1, PyTorch semantics: x viewed as [outer, C, inner] (5D: outer = N,
// inner = X*Y*Z; 2D: inner = 1), M = outer * inner values per channel.
//
// Statistics are accumulated in double with two passes (mean, then squared deviations), so a large
// mean never cancels the variance. Normalization uses the biased variance; the running variance is
// updated with the unbiased one (times M / (M - 1)). The training backward is the usual closed form
//   dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)),  xhat = (x - mean) * invstd,
// with dbeta = sum(dy) and dgamma = sum(dy * xhat). Every loop is parallel over channels.
#include <cmath>

#include "engine/cpu/cpu_backend.h"

namespace hdssl {
namespace {
using View = ChannelView;

// Sum over one channel's values of f(value, flat index), in double, as 8 partial sums by index mod 8
// added in a fixed order (one chain of double adds would be latency-bound).
template <class T, class F>
double channel_reduce(const T* p, const View& s, int64_t c, F f) {
  constexpr int kLanes = 8;
  double acc[kLanes] = {};
  for (int64_t n = 0; n < s.outer; ++n) {
    const int64_t off = (n * s.C + c) * s.inner;
    const T* q = p + off;
    int64_t i = 0;
    for (; i + kLanes <= s.inner; i += kLanes)
      for (int l = 0; l < kLanes; ++l) acc[l] += f(double(q[i + l]), off + i + l);
    for (; i < s.inner; ++i) acc[i % kLanes] += f(double(q[i]), off + i);
  }
  double total = 0;
  for (double v : acc) total += v;
  return total;
}

// y = x * scale[c] + shift[c] over the [outer, C, inner] view.
template <class T>
void affine(const T* px, const View& s, int64_t c, double scale, double shift, T* py) {
  for (int64_t n = 0; n < s.outer; ++n) {
    const int64_t off = (n * s.C + c) * s.inner;
    for (int64_t i = 0; i < s.inner; ++i) py[off + i] = T(double(px[off + i]) * scale + shift);
  }
}
}  // namespace

void CpuBackend::batchnorm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& y,
                                         Tensor& save_mean, Tensor& save_invstd, Tensor& running_mean,
                                         Tensor& running_var, const BatchNormArgs& a) {
  const char* op = "batchnorm_forward_train";
  const View s = channel_view(x);
  const int64_t M = s.count();  // > 1 (the dispatch's check)
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.data<T>();
    const T* pg = gamma.data<T>();
    const T* pb = beta.data<T>();
    T *py = y.data<T>(), *pm = save_mean.data<T>(), *pis = save_invstd.data<T>();
    T *prm = running_mean.data<T>(), *prv = running_var.data<T>();
#pragma omp parallel for schedule(static) if (x.numel() > 65536)
    for (int64_t c = 0; c < s.C; ++c) {
      const double mean = channel_reduce(px, s, c, [](double v, int64_t) { return v; }) / double(M);
      const double var = channel_reduce(px, s, c, [mean](double v, int64_t) { return (v - mean) * (v - mean); }) /
                         double(M);
      const double invstd = 1.0 / std::sqrt(var + a.eps);
      pm[c] = T(mean);
      pis[c] = T(invstd);
      prm[c] = T((1.0 - a.momentum) * double(prm[c]) + a.momentum * mean);
      prv[c] = T((1.0 - a.momentum) * double(prv[c]) + a.momentum * var * double(M) / double(M - 1));
      const double scale = invstd * double(pg[c]);
      affine(px, s, c, scale, double(pb[c]) - mean * scale, py);
    }
  });
}

void CpuBackend::batchnorm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                        const Tensor& running_mean, const Tensor& running_var, Tensor& y,
                                        const BatchNormArgs& a) {
  const char* op = "batchnorm_forward_eval";
  const View s = channel_view(x);
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const T *px = x.data<T>(), *pg = gamma.data<T>(), *pb = beta.data<T>();
    const T *prm = running_mean.data<T>(), *prv = running_var.data<T>();
    T* py = y.data<T>();
#pragma omp parallel for schedule(static) if (x.numel() > 65536)
    for (int64_t c = 0; c < s.C; ++c) {
      const double scale = double(pg[c]) / std::sqrt(double(prv[c]) + a.eps);
      affine(px, s, c, scale, double(pb[c]) - double(prm[c]) * scale, py);
    }
  });
}

void CpuBackend::batchnorm_backward(const Tensor& x, const Tensor& dy, const Tensor& gamma, const Tensor& save_mean,
                                    const Tensor& save_invstd, Tensor& dx, Tensor& dgamma, Tensor& dbeta) {
  const char* op = "batchnorm_backward";
  const View s = channel_view(x);
  const double M = double(s.count());
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const T *px = x.data<T>(), *pdy = dy.data<T>(), *pg = gamma.data<T>();
    const T *pm = save_mean.data<T>(), *pis = save_invstd.data<T>();
    T *pdx = dx.data<T>(), *pdg = dgamma.data<T>(), *pdb = dbeta.data<T>();
#pragma omp parallel for schedule(static) if (x.numel() > 65536)
    for (int64_t c = 0; c < s.C; ++c) {
      const double mean = double(pm[c]), invstd = double(pis[c]);
      const double sum_dy = channel_reduce(pdy, s, c, [](double g, int64_t) { return g; });
      const double sum_dy_xhat =
          channel_reduce(pdy, s, c, [&](double g, int64_t i) { return g * (double(px[i]) - mean) * invstd; });
      pdb[c] = T(sum_dy);
      pdg[c] = T(sum_dy_xhat);
      const double k = double(pg[c]) * invstd, mdy = sum_dy / M, mdyx = sum_dy_xhat / M;
      for (int64_t n = 0; n < s.outer; ++n) {
        const int64_t off = (n * s.C + c) * s.inner;
        for (int64_t i = off; i < off + s.inner; ++i) {
          const double xhat = (double(px[i]) - mean) * invstd;
          pdx[i] = T(k * (double(pdy[i]) - mdy - xhat * mdyx));
        }
      }
    }
  });
}

}  // namespace hdssl
