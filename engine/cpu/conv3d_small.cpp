// conv3d on small volumes (the deep levels of a pyramid: a few voxels, hundreds of channels), float32 and
// float64. There the weights dominate (512 x 512 x 27 floats = 28 MB) and the GEMM path of conv3d.cpp,
// which runs one GEMM per sample (and, for the filter gradient, accumulates dW^T [rows, Co] per sample
// and transposes it), streams them once per sample and more. Here all samples' columns go into one GEMM:
//   col [R = Ci*k^3, N*S]   (vol2col of every sample, column (n, voxel))
//   forward          y_all [Co, N*S] = W [Co, R] @ col (+ bias), then scattered to y [N, Co, S]
//   backward_data    dcol = W^T @ dy_all [Co, N*S], then dx = col2vol(dcol)
//   backward_filter  dW [Co, R] = dy_all @ col^T   (K = N*S: dW is written once, no transpose)
// so each pass reads or writes the weights once. Threads split the GEMM's output rows (OpenBLAS runs
// single-threaded inside, as in conv3d.cpp); every element is still summed by one GEMM call, so results
// do not depend on the thread count beyond OpenBLAS's own kernels.
#include "engine/cpu/conv3d_small.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <vector>

#include "engine/cpu/blas.h"
#include "engine/cpu/cpu_backend.h"

namespace hdssl::conv3d_small {
namespace {

struct Geom {
  int64_t N, Ci, Co, X, Y, Z, k, pad;
  int64_t S() const { return X * Y * Z; }
  int64_t R() const { return Ci * k * k * k; }
  int64_t NS() const { return N * S(); }
};

Geom geom_of(const Tensor& x_like, const Tensor& w, const Conv3dArgs& a) {
  return Geom{x_like.size(0), w.size(1), w.size(0), x_like.size(2), x_like.size(3), x_like.size(4), w.size(2), a.pad};
}

// Where one batched GEMM beats the per-sample GEMMs: few columns, many weights.
bool worth_it(const Geom& g) { return g.k > 1 && g.NS() <= 256 && g.Co * g.R() >= (int64_t(1) << 16); }

template <class T>
std::vector<T>& buffer(int which, size_t n) {
  thread_local std::vector<T> bufs[3];
  std::vector<T>& b = bufs[which];
  if (b.size() < n) b.resize(n);
  return b;
}

// Runs body(lo, hi) on `parts` contiguous row blocks of [0, n) over OpenMP threads, OpenBLAS at one thread.
template <class F>
void split_rows(int64_t n, F&& body) {
  const int threads = int(std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), n / 16)));
  const int blas_threads = openblas_get_num_threads();
  if (blas_threads != 1) openblas_set_num_threads(1);
#pragma omp parallel for schedule(static, 1) num_threads(threads) if (threads > 1)
  for (int t = 0; t < threads; ++t) body(n * t / threads, n * (t + 1) / threads);
  if (blas_threads != 1) openblas_set_num_threads(blas_threads);
}

// col [R, N*S]: row (ci, a, b, c), column (n, x, y, z) = x[n, ci, x+a-pad, y+b-pad, z+c-pad] or 0.
template <class T>
void vol2col(const Geom& g, const T* x, T* col) {
  const int64_t k = g.k, S = g.S(), NS = g.NS();
  for (int64_t r = 0; r < g.R(); ++r) {
    const int64_t ci = r / (k * k * k), a = r / (k * k) % k - g.pad, b = r / k % k - g.pad, c = r % k - g.pad;
    T* out = col + r * NS;
    for (int64_t n = 0; n < g.N; ++n) {
      const T* xc = x + (n * g.Ci + ci) * S;
      for (int64_t i = 0; i < g.X; ++i)
        for (int64_t j = 0; j < g.Y; ++j)
          for (int64_t l = 0; l < g.Z; ++l) {
            const int64_t si = i + a, sj = j + b, sl = l + c;
            const bool in = si >= 0 && si < g.X && sj >= 0 && sj < g.Y && sl >= 0 && sl < g.Z;
            *out++ = in ? xc[(si * g.Y + sj) * g.Z + sl] : T(0);
          }
    }
  }
}

// dx = col2vol(dcol), the adjoint of vol2col (dx overwritten).
template <class T>
void col2vol(const Geom& g, const T* dcol, T* dx) {
  const int64_t k = g.k, S = g.S(), NS = g.NS();
  std::fill(dx, dx + g.N * g.Ci * S, T(0));
  for (int64_t r = 0; r < g.R(); ++r) {
    const int64_t ci = r / (k * k * k), a = r / (k * k) % k - g.pad, b = r / k % k - g.pad, c = r % k - g.pad;
    const T* in = dcol + r * NS;
    for (int64_t n = 0; n < g.N; ++n) {
      T* dxc = dx + (n * g.Ci + ci) * S;
      for (int64_t i = 0; i < g.X; ++i)
        for (int64_t j = 0; j < g.Y; ++j)
          for (int64_t l = 0; l < g.Z; ++l, ++in) {
            const int64_t si = i + a, sj = j + b, sl = l + c;
            if (si >= 0 && si < g.X && sj >= 0 && sj < g.Y && sl >= 0 && sl < g.Z)
              dxc[(si * g.Y + sj) * g.Z + sl] += *in;
          }
    }
  }
}

// [N, C, S] <-> [C, N*S]
template <class T>
void to_channel_major(const T* v, int64_t N, int64_t C, int64_t S, T* out) {
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) std::copy(v + (n * C + c) * S, v + (n * C + c + 1) * S, out + (c * N + n) * S);
}
template <class T>
void from_channel_major(const T* v, int64_t N, int64_t C, int64_t S, T* out) {
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) std::copy(v + (c * N + n) * S, v + (c * N + n + 1) * S, out + (n * C + c) * S);
}

}  // namespace

bool forward_always(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, const Conv3dArgs& a) {
  const Geom g = geom_of(x, w, a);
  dispatch_float(x.dtype(), "conv3d_forward", [&](auto tag) {
    using T = decltype(tag);
    std::vector<T>& col = buffer<T>(0, size_t(g.R() * g.NS()));
    std::vector<T>& yall = buffer<T>(1, size_t(g.Co * g.NS()));
    vol2col(g, x.data<T>(), col.data());
    const T* pw = w.data<T>();
    const T* pb = b.defined() ? b.data<T>() : nullptr;
    split_rows(g.Co, [&](int64_t lo, int64_t hi) {
      for (int64_t co = lo; co < hi; ++co)
        std::fill(yall.data() + co * g.NS(), yall.data() + (co + 1) * g.NS(), pb ? pb[co] : T(0));
      blas::gemm(false, false, hi - lo, g.NS(), g.R(), 1.0, pw + lo * g.R(), g.R(), col.data(), g.NS(), 1.0,
                 yall.data() + lo * g.NS(), g.NS());
    });
    from_channel_major(yall.data(), g.N, g.Co, g.S(), y.data<T>());
  });
  return true;
}

bool backward_data_always(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv3dArgs& a) {
  const Geom g = geom_of(dy, w, a);
  dispatch_float(dy.dtype(), "conv3d_backward_data", [&](auto tag) {
    using T = decltype(tag);
    std::vector<T>& dyall = buffer<T>(1, size_t(g.Co * g.NS()));
    std::vector<T>& dcol = buffer<T>(0, size_t(g.R() * g.NS()));
    to_channel_major(dy.data<T>(), g.N, g.Co, g.S(), dyall.data());
    const T* pw = w.data<T>();
    split_rows(g.R(), [&](int64_t lo, int64_t hi) {
      blas::gemm(true, false, hi - lo, g.NS(), g.Co, 1.0, pw + lo, g.R(), dyall.data(), g.NS(), 0.0,
                 dcol.data() + lo * g.NS(), g.NS());
    });
    col2vol(g, dcol.data(), dx.data<T>());
  });
  return true;
}

bool backward_filter_always(const Tensor& x, const Tensor& dy, Tensor& dw, const Conv3dArgs& a) {
  const Geom g = geom_of(x, dw, a);
  dispatch_float(x.dtype(), "conv3d_backward_filter", [&](auto tag) {
    using T = decltype(tag);
    std::vector<T>& col = buffer<T>(0, size_t(g.R() * g.NS()));
    std::vector<T>& dyall = buffer<T>(1, size_t(g.Co * g.NS()));
    vol2col(g, x.data<T>(), col.data());
    to_channel_major(dy.data<T>(), g.N, g.Co, g.S(), dyall.data());
    T* pdw = dw.data<T>();
    split_rows(g.Co, [&](int64_t lo, int64_t hi) {
      blas::gemm(false, true, hi - lo, g.R(), g.NS(), 1.0, dyall.data() + lo * g.NS(), g.NS(), col.data(), g.NS(),
                 0.0, pdw + lo * g.R(), g.R());
    });
  });
  return true;
}

bool forward(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, const Conv3dArgs& a) {
  return worth_it(geom_of(x, w, a)) && forward_always(x, w, b, y, a);
}
bool backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv3dArgs& a) {
  return worth_it(geom_of(dy, w, a)) && backward_data_always(dy, w, dx, a);
}
bool backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, const Conv3dArgs& a) {
  return worth_it(geom_of(x, dw, a)) && backward_filter_always(x, dy, dw, a);
}

}  // namespace hdssl::conv3d_small
