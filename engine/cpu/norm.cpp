// Batch normalization over every dim but 1, PyTorch semantics: x viewed as [outer, C, inner] (5D: outer = N,
// inner = X*Y*Z; 2D: inner = 1), M = outer * inner values per channel.
//
// Statistics are accumulated in double with two passes (mean, then squared deviations), so a large
// mean never cancels the variance. Normalization uses the biased variance; the running variance is
// updated with the unbiased one (times M / (M - 1)). The training backward is the usual closed form
//   dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)),  xhat = (x - mean) * invstd,
// with dbeta = sum(dy) and dgamma = sum(dy * xhat). Every loop is parallel over channels.
//
// The fused batch norm + ReLU (+ residual) runs the same code with an epilogue: the normalized value is
// rounded to T first, then r is added in T and the ReLU applied (NaN passes), which is exactly what
// batchnorm_forward_*, axpby(1, ., 1, r) and relu_forward do one after the other, so the bits are the
// same. Its backward masks dy with y > 0 where the plain backward reads dy (relu_backward's rule).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

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

// Two such sums in one pass (the backward's sum(g) and sum(g * xhat)) of f1(v, i) and f2(v, i) with
// v = load(i) at flat index i: each keeps channel_reduce's lanes and order, so each equals its own
// channel_reduce bit for bit.
template <class Load, class F1, class F2>
void channel_reduce2(const View& s, int64_t c, Load load, F1 f1, F2 f2, double& sum1, double& sum2) {
  constexpr int kLanes = 8;
  double acc1[kLanes] = {}, acc2[kLanes] = {};
  for (int64_t n = 0; n < s.outer; ++n) {
    const int64_t off = (n * s.C + c) * s.inner;
    int64_t i = 0;
    for (; i + kLanes <= s.inner; i += kLanes)
      for (int l = 0; l < kLanes; ++l) {
        const int64_t j = off + i + l;
        const double v = load(j);
        acc1[l] += f1(v, j);
        acc2[l] += f2(v, j);
      }
    for (; i < s.inner; ++i) {
      const double v = load(off + i);
      acc1[i % kLanes] += f1(v, off + i);
      acc2[i % kLanes] += f2(v, off + i);
    }
  }
  sum1 = sum2 = 0;
  for (int l = 0; l < kLanes; ++l) {
    sum1 += acc1[l];
    sum2 += acc2[l];
  }
}

// y = x * scale[c] + shift[c] over the [outer, C, inner] view; with kRelu, rounded to T, plus r[i] when r is
// given, then max(., 0) with NaN passing (relu_forward's rule).
template <bool kRelu, class T>
void affine(const T* px, const View& s, int64_t c, double scale, double shift, const T* pr, T* py) {
  for (int64_t n = 0; n < s.outer; ++n) {
    const int64_t off = (n * s.C + c) * s.inner;
    if constexpr (!kRelu) {
      for (int64_t i = off; i < off + s.inner; ++i) py[i] = T(double(px[i]) * scale + shift);
    } else if (pr) {
      for (int64_t i = off; i < off + s.inner; ++i) {
        const T v = T(double(px[i]) * scale + shift) + pr[i];
        py[i] = (v > T(0) || v != v) ? v : T(0);
      }
    } else {
      for (int64_t i = off; i < off + s.inner; ++i) {
        const T v = T(double(px[i]) * scale + shift);
        py[i] = (v > T(0) || v != v) ? v : T(0);
      }
    }
  }
}

// Training forward, plain (kRelu false, r unused) or fused with ReLU and the optional residual r.
template <bool kRelu>
void forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& r, Tensor& y,
                   Tensor& save_mean, Tensor& save_invstd, Tensor& running_mean, Tensor& running_var,
                   const BatchNormArgs& a, const char* op) {
  const View s = channel_view(x);
  const int64_t M = s.count();  // > 1 (the dispatch's check)
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.data<T>();
    const T* pg = gamma.data<T>();
    const T* pb = beta.data<T>();
    const T* pr = r.defined() ? r.data<T>() : nullptr;
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
      affine<kRelu>(px, s, c, scale, double(pb[c]) - mean * scale, pr, py);
    }
  });
}

// Eval forward (running statistics), plain or fused.
template <bool kRelu>
void forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& r,
                  const Tensor& running_mean, const Tensor& running_var, Tensor& y, const BatchNormArgs& a,
                  const char* op) {
  const View s = channel_view(x);
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const T *px = x.data<T>(), *pg = gamma.data<T>(), *pb = beta.data<T>();
    const T *prm = running_mean.data<T>(), *prv = running_var.data<T>();
    const T* pr = r.defined() ? r.data<T>() : nullptr;
    T* py = y.data<T>();
#pragma omp parallel for schedule(static) if (x.numel() > 65536)
    for (int64_t c = 0; c < s.C; ++c) {
      const double scale = double(pg[c]) / std::sqrt(double(prv[c]) + a.eps);
      affine<kRelu>(px, s, c, scale, double(pb[c]) - double(prm[c]) * scale, pr, py);
    }
  });
}

// v if keep, else +0, without a branch: a scalar floating-point select compiles to a jump, and on a
// ReLU's output half of them are mispredicted (the fused backward ran 8x slower than the unfused ops
// with `keep ? v : 0`); masking the bits vectorizes. The same value as the select, NaN included.
template <class T>
inline T keep_or_zero(T v, bool keep) {
  using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  Bits b;
  std::memcpy(&b, &v, sizeof b);
  b &= Bits(0) - Bits(keep);
  std::memcpy(&v, &b, sizeof b);
  return v;
}

// Training backward. Plain: g = dy. Masked (the fused op): g = dy where y > 0, else 0; g is also written
// to dr when dr is given.
template <bool kMasked>
void backward(const Tensor& x, const Tensor& y, const Tensor& dy, const Tensor& gamma, const Tensor& save_mean,
              const Tensor& save_invstd, Tensor& dx, Tensor& dgamma, Tensor& dbeta, Tensor& dr, const char* op) {
  const View s = channel_view(x);
  const double M = double(s.count());
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const T *px = x.data<T>(), *pdy = dy.data<T>(), *pg = gamma.data<T>();
    const T *pm = save_mean.data<T>(), *pis = save_invstd.data<T>();
    const T* py = kMasked ? y.data<T>() : nullptr;
    T *pdx = dx.data<T>(), *pdg = dgamma.data<T>(), *pdb = dbeta.data<T>();
    T* pdr = kMasked && dr.defined() ? dr.data<T>() : nullptr;
    // g = dy[i], for the fused op masked by the ReLU's output: the T relu_backward would have written
    auto grad = [&](int64_t i) -> T {
      if constexpr (kMasked) return keep_or_zero(pdy[i], py[i] > T(0));
      else return pdy[i];
    };
#pragma omp parallel for schedule(static) if (x.numel() > 65536)
    for (int64_t c = 0; c < s.C; ++c) {
      const double mean = double(pm[c]), invstd = double(pis[c]);
      double sum_dy, sum_dy_xhat;
      channel_reduce2(
          s, c, [&](int64_t i) { return double(grad(i)); }, [](double g, int64_t) { return g; },
          [&](double g, int64_t i) { return g * (double(px[i]) - mean) * invstd; }, sum_dy, sum_dy_xhat);
      pdb[c] = T(sum_dy);
      pdg[c] = T(sum_dy_xhat);
      const double k = double(pg[c]) * invstd, mdy = sum_dy / M, mdyx = sum_dy_xhat / M;
      for (int64_t n = 0; n < s.outer; ++n) {
        const int64_t off = (n * s.C + c) * s.inner;
        for (int64_t i = off; i < off + s.inner; ++i) {
          const T g = grad(i);
          const double xhat = (double(px[i]) - mean) * invstd;
          pdx[i] = T(k * (double(g) - mdy - xhat * mdyx));
          if (kMasked && pdr) pdr[i] = g;
        }
      }
    }
  });
}
}  // namespace

void CpuBackend::batchnorm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& y,
                                         Tensor& save_mean, Tensor& save_invstd, Tensor& running_mean,
                                         Tensor& running_var, const BatchNormArgs& a) {
  forward_train<false>(x, gamma, beta, Tensor(), y, save_mean, save_invstd, running_mean, running_var, a,
                       "batchnorm_forward_train");
}

void CpuBackend::batchnorm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                        const Tensor& running_mean, const Tensor& running_var, Tensor& y,
                                        const BatchNormArgs& a) {
  forward_eval<false>(x, gamma, beta, Tensor(), running_mean, running_var, y, a, "batchnorm_forward_eval");
}

void CpuBackend::batchnorm_backward(const Tensor& x, const Tensor& dy, const Tensor& gamma, const Tensor& save_mean,
                                    const Tensor& save_invstd, Tensor& dx, Tensor& dgamma, Tensor& dbeta) {
  Tensor no_dr;
  backward<false>(x, Tensor(), dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta, no_dr, "batchnorm_backward");
}

void CpuBackend::batchnorm_relu_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                              const Tensor& r, Tensor& y, Tensor& save_mean, Tensor& save_invstd,
                                              Tensor& running_mean, Tensor& running_var, const BatchNormArgs& a) {
  forward_train<true>(x, gamma, beta, r, y, save_mean, save_invstd, running_mean, running_var, a,
                      "batchnorm_relu_forward_train");
}

void CpuBackend::batchnorm_relu_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                             const Tensor& r, const Tensor& running_mean, const Tensor& running_var,
                                             Tensor& y, const BatchNormArgs& a) {
  forward_eval<true>(x, gamma, beta, r, running_mean, running_var, y, a, "batchnorm_relu_forward_eval");
}

void CpuBackend::batchnorm_relu_backward(const Tensor& x, const Tensor& y, const Tensor& dy, const Tensor& gamma,
                                         const Tensor& save_mean, const Tensor& save_invstd, Tensor& dx,
                                         Tensor& dgamma, Tensor& dbeta, Tensor& dr) {
  backward<true>(x, y, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta, dr, "batchnorm_relu_backward");
}

}  // namespace hdssl
