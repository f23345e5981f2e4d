// 3D convolution (stride 1, "same" zero padding) as GEMM.
//
// vol2col: for one sample x_n [Ci, X, Y, Z] and a slab of output planes x in [x0, x1), the column buffer
// col [Ci*k^3, (x1-x0)*Y*Z] holds in row r = (ci, a, b, c) (the weight's own flat order) and column
// j = (x, y, z) the input voxel x_n[ci, x+a-pad, y+b-pad, z+c-pad], or 0 outside the volume. Each row is a
// shifted copy of the input, so it is filled with z-runs (memcpy) and zeroed borders. Then
//   forward          y_n[:, slab]  = W [Co, Ci*k^3] @ col                (+ bias, written first, beta = 1)
//   backward_data    dcol          = W^T @ dy_n[:, slab];  dx_n += col2vol(dcol)  (the adjoint of vol2col)
//   backward_filter  dW           += dy_n[:, slab] @ col^T
// The slab is a contiguous range of y_n's flat spatial index, so GEMMs address it with ld = X*Y*Z and the
// column buffer stays bounded (kColBudget elements) whatever the volume size. 1x1x1 convs need no
// vol2col: col is x_n itself.
//
// Threads: with a batch of at least two samples, samples are split over OpenMP threads and OpenBLAS is
// held at one thread meanwhile (its pthreads would otherwise oversubscribe the cores); with one sample,
// OpenBLAS threads the GEMMs and OpenMP the vol2col / col2vol loops. The filter gradient is summed per
// thread-independent sample partial in sample order, so it does not depend on the thread count.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "engine/cpu/cpu_backend.h"

namespace hdssl {
namespace {

constexpr int64_t kColBudget = int64_t(1) << 23;  // elements of one column buffer (32 MiB float32)

void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(m), int(n), int(k),
              alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
}
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
          const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(m), int(n), int(k),
              alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
}

// The geometry shared by the three passes.
struct Geom {
  int64_t N, Ci, Co, X, Y, Z, k, pad;
  int64_t S() const { return X * Y * Z; }
  int64_t rows() const { return Ci * k * k * k; }  // K of the GEMMs
  // Planes per slab: the column buffer rows() x (planes*Y*Z) stays within the budget; slabs equal-sized.
  int64_t planes() const {
    const int64_t per_plane = std::max<int64_t>(1, rows() * Y * Z);
    const int64_t max_planes = std::max<int64_t>(1, kColBudget / per_plane);
    const int64_t slabs = (X + max_planes - 1) / max_planes;
    return (X + slabs - 1) / slabs;
  }
};

Geom geometry(const Tensor& x_like, const Tensor& w, const Conv3dArgs& a, const char* op) {
  HDSSL_CHECK(x_like.dim() == 5 && w.dim() == 5) << op << ": expected 5D tensors, got " << x_like.describe()
                                                  << " and weight " << w.describe();
  const int64_t k = w.size(2);
  HDSSL_CHECK(w.size(3) == k && w.size(4) == k && k == 2 * a.pad + 1 && a.pad >= 0)
      << op << ": weight " << w.describe() << " needs a cubic kernel of size 2*pad+1 with pad " << a.pad;
  return Geom{x_like.size(0), w.size(1), w.size(0), x_like.size(2), x_like.size(3), x_like.size(4), k, a.pad};
}

// Runs body(n, thread) for every sample: over OpenMP threads with single-threaded OpenBLAS when the batch
// can feed them, else serially (OpenBLAS and the inner OpenMP loops then use the cores).
template <class F>
void for_each_sample(int64_t N, int& threads_used, F&& body) {
  const int threads = std::min<int64_t>(omp_get_max_threads(), N);
  threads_used = std::max(threads, 1);
  if (threads <= 1) {
    for (int64_t n = 0; n < N; ++n) body(n, 0);
    return;
  }
  const int blas_threads = openblas_get_num_threads();
  openblas_set_num_threads(1);
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t n = 0; n < N; ++n) body(n, omp_get_thread_num());
  openblas_set_num_threads(blas_threads);
}

// col = vol2col(x_n) for output planes [x0, x1). Rows are independent: parallel unless inside a sample loop.
template <class T>
void vol2col(const Geom& g, const T* xn, int64_t x0, int64_t x1, T* col, bool parallel) {
  const int64_t k = g.k, Y = g.Y, Z = g.Z, cols = (x1 - x0) * Y * Z;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t r = 0; r < g.rows(); ++r) {
    const int64_t ci = r / (k * k * k), a = r / (k * k) % k, b = r / k % k, c = r % k;
    const int64_t dz = c - g.pad, z_lo = std::max<int64_t>(0, -dz), z_hi = std::min(Z, Z - dz);
    T* out = col + r * cols;
    for (int64_t x = x0; x < x1; ++x) {
      const int64_t ix = x + a - g.pad;
      for (int64_t y = 0; y < Y; ++y, out += Z) {
        const int64_t iy = y + b - g.pad;
        if (ix < 0 || ix >= g.X || iy < 0 || iy >= Y || z_lo >= z_hi) {
          std::fill(out, out + Z, T(0));
          continue;
        }
        const T* in = xn + ((ci * g.X + ix) * Y + iy) * Z + dz;
        std::fill(out, out + z_lo, T(0));
        std::memcpy(out + z_lo, in + z_lo, size_t(z_hi - z_lo) * sizeof(T));
        std::fill(out + z_hi, out + Z, T(0));
      }
    }
  }
}

// dx_n += col2vol(dcol), the adjoint of vol2col. Rows of one input channel hit the same voxels, so the
// parallel split is over channels.
template <class T>
void col2vol(const Geom& g, const T* dcol, int64_t x0, int64_t x1, T* dxn, bool parallel) {
  const int64_t k = g.k, k3 = k * k * k, Y = g.Y, Z = g.Z, cols = (x1 - x0) * Y * Z;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t ci = 0; ci < g.Ci; ++ci) {
    for (int64_t r = ci * k3; r < (ci + 1) * k3; ++r) {
      const int64_t a = r / (k * k) % k, b = r / k % k, c = r % k;
      const int64_t dz = c - g.pad, z_lo = std::max<int64_t>(0, -dz), z_hi = std::min(Z, Z - dz);
      const T* in = dcol + r * cols;
      for (int64_t x = x0; x < x1; ++x) {
        const int64_t ix = x + a - g.pad;
        for (int64_t y = 0; y < Y; ++y, in += Z) {
          const int64_t iy = y + b - g.pad;
          if (ix < 0 || ix >= g.X || iy < 0 || iy >= Y) continue;
          T* out = dxn + ((ci * g.X + ix) * Y + iy) * Z + dz;
          for (int64_t z = z_lo; z < z_hi; ++z) out[z] += in[z];
        }
      }
    }
  }
}

}  // namespace

void CpuBackend::conv3d_forward(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, const Conv3dArgs& a) {
  const Geom g = geometry(x, w, a, "conv3d_forward");
  HDSSL_CHECK(x.size(1) == g.Ci && y.shape() == Shape({g.N, g.Co, g.X, g.Y, g.Z}) && w.dtype() == x.dtype() &&
              y.dtype() == x.dtype())
      << "conv3d_forward: x " << x.describe() << " w " << w.describe() << " y " << y.describe();
  HDSSL_CHECK(!b.defined() || (b.numel() == g.Co && b.dtype() == x.dtype()))
      << "conv3d_forward: bias " << b.describe() << " for " << g.Co << " output channels";
  dispatch_float(x.dtype(), "conv3d_forward", [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.data<T>();
    const T* pw = w.data<T>();
    const T* pb = b.defined() ? b.data<T>() : nullptr;
    T* py = y.data<T>();
    const int64_t S = g.S(), plane = g.Y * g.Z, P = g.planes();
    int threads = 1;
    std::vector<std::vector<T>> cols(size_t(std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), g.N))));
    for_each_sample(g.N, threads, [&](int64_t n, int t) {
      const T* xn = px + n * g.Ci * S;
      T* yn = py + n * g.Co * S;
      for (int64_t co = 0; co < g.Co; ++co) std::fill(yn + co * S, yn + (co + 1) * S, pb ? pb[co] : T(0));
      if (g.k == 1) {
        gemm(false, false, g.Co, S, g.Ci, T(1), pw, g.Ci, xn, S, T(1), yn, S);
        return;
      }
      std::vector<T>& col = cols[size_t(t)];
      col.resize(size_t(g.rows() * P * plane));
      for (int64_t x0 = 0; x0 < g.X; x0 += P) {
        const int64_t x1 = std::min(g.X, x0 + P), ncol = (x1 - x0) * plane;
        vol2col(g, xn, x0, x1, col.data(), threads == 1);
        gemm(false, false, g.Co, ncol, g.rows(), T(1), pw, g.rows(), col.data(), ncol, T(1), yn + x0 * plane, S);
      }
    });
  });
}

void CpuBackend::conv3d_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv3dArgs& a) {
  const Geom g = geometry(dy, w, a, "conv3d_backward_data");
  HDSSL_CHECK(dy.size(1) == g.Co && dx.shape() == Shape({g.N, g.Ci, g.X, g.Y, g.Z}) && w.dtype() == dy.dtype() &&
              dx.dtype() == dy.dtype())
      << "conv3d_backward_data: dy " << dy.describe() << " w " << w.describe() << " dx " << dx.describe();
  dispatch_float(dy.dtype(), "conv3d_backward_data", [&](auto tag) {
    using T = decltype(tag);
    const T* pdy = dy.data<T>();
    const T* pw = w.data<T>();
    T* pdx = dx.data<T>();
    const int64_t S = g.S(), plane = g.Y * g.Z, P = g.planes();
    int threads = 1;
    std::vector<std::vector<T>> cols(size_t(std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), g.N))));
    for_each_sample(g.N, threads, [&](int64_t n, int t) {
      const T* dyn = pdy + n * g.Co * S;
      T* dxn = pdx + n * g.Ci * S;
      if (g.k == 1) {
        gemm(true, false, g.Ci, S, g.Co, T(1), pw, g.Ci, dyn, S, T(0), dxn, S);
        return;
      }
      std::fill(dxn, dxn + g.Ci * S, T(0));
      std::vector<T>& col = cols[size_t(t)];
      col.resize(size_t(g.rows() * P * plane));
      for (int64_t x0 = 0; x0 < g.X; x0 += P) {
        const int64_t x1 = std::min(g.X, x0 + P), ncol = (x1 - x0) * plane;
        gemm(true, false, g.rows(), ncol, g.Co, T(1), pw, g.rows(), dyn + x0 * plane, S, T(0), col.data(), ncol);
        col2vol(g, col.data(), x0, x1, dxn, threads == 1);
      }
    });
  });
}

void CpuBackend::conv3d_backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, const Conv3dArgs& a) {
  const Geom g = geometry(x, dw, a, "conv3d_backward_filter");
  HDSSL_CHECK(x.size(1) == g.Ci && dy.shape() == Shape({g.N, g.Co, g.X, g.Y, g.Z}) && dw.dtype() == x.dtype() &&
              dy.dtype() == x.dtype())
      << "conv3d_backward_filter: x " << x.describe() << " dy " << dy.describe() << " dw " << dw.describe();
  dispatch_float(x.dtype(), "conv3d_backward_filter", [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.data<T>();
    const T* pdy = dy.data<T>();
    T* pdw = dw.data<T>();
    const int64_t S = g.S(), plane = g.Y * g.Z, P = g.planes(), wsize = g.Co * g.rows();
    int threads = 1;
    const size_t nt = size_t(std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), g.N)));
    std::vector<std::vector<T>> cols(nt);
    // One partial per sample (deterministic order of the final sum); sample 0 writes dw directly.
    std::vector<T> partial(size_t(std::max<int64_t>(0, g.N - 1) * wsize));
    if (g.N == 0) std::fill(pdw, pdw + wsize, T(0));
    for_each_sample(g.N, threads, [&](int64_t n, int t) {
      const T* xn = px + n * g.Ci * S;
      const T* dyn = pdy + n * g.Co * S;
      T* out = n == 0 ? pdw : partial.data() + (n - 1) * wsize;
      if (g.k == 1) {
        gemm(false, true, g.Co, g.Ci, S, T(1), dyn, S, xn, S, T(0), out, g.Ci);
        return;
      }
      std::vector<T>& col = cols[size_t(t)];
      col.resize(size_t(g.rows() * P * plane));
      for (int64_t x0 = 0; x0 < g.X; x0 += P) {
        const int64_t x1 = std::min(g.X, x0 + P), ncol = (x1 - x0) * plane;
        vol2col(g, xn, x0, x1, col.data(), threads == 1);
        gemm(false, true, g.Co, g.rows(), ncol, T(1), dyn + x0 * plane, S, col.data(), ncol, T(x0 == 0 ? 0 : 1), out,
             g.rows());
      }
    });
    for (int64_t n = 1; n < g.N; ++n) {
      const T* p = partial.data() + (n - 1) * wsize;
      for (int64_t i = 0; i < wsize; ++i) pdw[i] += p[i];
    }
  });
}

}  // namespace hdssl
