// 3D convolution (stride 1, "same" zero padding) as GEMM, on OpenBLAS.
//
// vol2col: for one sample x_n [Ci, X, Y, Z] and a tile of output lines (x, y) (a contiguous range of the
// flat spatial index, Z voxels per line), the column buffer col [Ci*k^3, tile] holds in row
// r = (ci, a, b, c) (the weight's own flat order) and column j = (x, y, z) the input voxel
// x_n[ci, x+a-pad, y+b-pad, z+c-pad], or 0 outside the volume. Each row is a shifted copy of the input, so
// it is filled with a few long memcpys plus zeroed borders. Then
//   forward          y_n[:, tile] = W [Co, Ci*k^3] @ col                   (bias written first, beta = 1)
//   backward_data    dcol         = W^T @ dy_n[:, tile];  dx_n += col2vol(dcol)   (the adjoint of vol2col)
//   backward_filter  dW^T        += col @ dy_n[:, tile]^T                  (transposed: packs better)
// GEMMs address a tile of y_n / dy_n in place with ld = X*Y*Z. A tile holds about kTileElems elements of
// col, so it stays in cache between vol2col and the GEMM, and memory stays bounded for any volume.
// 1x1x1 convs need no vol2col: col is x_n itself.
//
// Threads: OpenMP splits work that writes disjoint outputs, and OpenBLAS runs single-threaded inside
// (OpenBLAS's own pthreads next to OpenMP's oversubscribe the cores: measured 10-50x slower here).
//   forward:          (sample, tile) pairs, each writing its own columns of y;
//   backward_data:    blocks of input channels, each doing the GEMM rows and col2vol of its channels;
//   backward_filter:  blocks of rows of dW^T, each doing vol2col and the GEMM for its rows.
// Every output element is thus summed in the same order whatever the thread count (up to OpenBLAS).
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "engine/cpu/blas.h"
#include "engine/cpu/conv3d_direct.h"
#include "engine/cpu/conv3d_small.h"
#include "engine/cpu/cpu_backend.h"

namespace hdssl {
namespace {

constexpr int64_t kTileElems = int64_t(1) << 18;  // column-buffer elements per tile (1 MiB float32)
constexpr int64_t kMinTileCols = 256;             // but at least this many columns, for GEMM efficiency

using blas::gemm;

// The geometry shared by the three passes.
struct Geom {
  int64_t N, Ci, Co, X, Y, Z, k, pad;
  int64_t S() const { return X * Y * Z; }
  int64_t k3() const { return k * k * k; }
  int64_t rows() const { return Ci * k3(); }  // K of the forward GEMM
  // Lines (x, y) per tile, so that a tile of col has about kTileElems elements.
  int64_t lines() const {
    const int64_t cols = std::max(kMinTileCols, kTileElems / std::max<int64_t>(1, rows()));
    return std::max<int64_t>(1, std::min(X * Y, cols / std::max<int64_t>(1, Z)));
  }
  int64_t tiles() const { return (X * Y + lines() - 1) / lines(); }
  double macs() const { return double(N) * double(S()) * double(Co) * double(rows()); }
};

// x_like is x or dx [N,Ci,X,Y,Z], w is w or dw [Co,Ci,k,k,k] (shapes checked by the dispatch).
Geom geometry(const Tensor& x_like, const Tensor& w, const Conv3dArgs& a) {
  return Geom{x_like.size(0), w.size(1), w.size(0), x_like.size(2), x_like.size(3), x_like.size(4), w.size(2), a.pad};
}

// Runs body(item, thread) for items [0, n) over OpenMP threads, with OpenBLAS held at one thread
// meanwhile. Items are handed out dynamically, so a thread that the OS preempts (shared cores) does not
// hold the others back. body gets the thread number to pick its scratch buffer. A conv of under
// kMinParallelMacs multiply-adds runs on one thread: waking the others would cost more.
constexpr double kMinParallelMacs = 1 << 22;
template <class F>
void parallel_items(int64_t n, double macs, F&& body) {
  const int threads =
      macs < kMinParallelMacs ? 1 : int(std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), n)));
  const int blas_threads = openblas_get_num_threads();
  if (blas_threads != 1) openblas_set_num_threads(1);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1)
  for (int64_t i = 0; i < n; ++i) body(i, omp_get_thread_num());
  if (blas_threads != 1) openblas_set_num_threads(blas_threads);
}

// [lo, hi) of block b when n things are split into `blocks` near-equal contiguous blocks.
int64_t block_begin(int64_t n, int64_t blocks, int64_t b) { return n * b / blocks; }

// One scratch buffer per OpenMP thread.
template <class T>
struct Scratch {
  std::vector<std::vector<T>> per_thread{size_t(std::max(1, omp_get_max_threads()))};
  T* get(int thread, int64_t n) {
    std::vector<T>& v = per_thread[size_t(thread)];
    if (int64_t(v.size()) < n) v.resize(size_t(n));
    return v.data();
  }
};

// Walks the tile's lines [l0, l1) one x at a time: calls f(x, y0, y1, offset of line (x, y0) in the tile).
template <class F>
void for_each_x_run(const Geom& g, int64_t l0, int64_t l1, F&& f) {
  for (int64_t l = l0; l < l1;) {
    const int64_t x = l / g.Y, y0 = l % g.Y, y1 = std::min(g.Y, y0 + (l1 - l));
    f(x, y0, y1, (l - l0) * g.Z);
    l += y1 - y0;
  }
}

// The shift of one kernel row r = (ci, a, b, c) and the y range [ya, yb) of the run [y0, y1) whose source
// lines iy = y + b - pad lie in the volume.
struct Tap {
  int64_t ci, a, b, dz, z_lo, z_hi;
  Tap(const Geom& g, int64_t r) {
    const int64_t k = g.k;
    ci = r / (k * k * k), a = r / (k * k) % k, b = r / k % k, dz = r % k - g.pad;
    z_lo = std::clamp<int64_t>(-dz, 0, g.Z), z_hi = std::clamp<int64_t>(g.Z - dz, z_lo, g.Z);
  }
  void y_range(const Geom& g, int64_t y0, int64_t y1, int64_t& ya, int64_t& yb) const {
    ya = std::clamp(g.pad - b, y0, y1), yb = std::clamp(g.Y + g.pad - b, ya, y1);
  }
};

// Zeroes the entries of each of n lines of out whose source z + dz falls outside [0, Z): |dz| entries at
// one end of each line (kept as plain stores: a memset call per line would cost more than the stores).
template <class T>
__attribute__((optimize("no-tree-loop-distribute-patterns"))) void zero_z_borders(T* out, int64_t n, const Geom& g,
                                                                                 const Tap& t) {
  if (t.dz == 0) return;
  const int64_t lo = t.dz > 0 ? t.z_hi : 0, hi = t.dz > 0 ? g.Z : t.z_lo;
  for (int64_t j = 0; j < n; ++j, out += g.Z)
    for (int64_t z = lo; z < hi; ++z) out[z] = T(0);
}

// Rows [r0, r1) of col = vol2col(x_n) for the output lines [l0, l1) (line l = (x, y) = (l / Y, l % Y), Z
// columns each). For one x the valid source lines are contiguous in memory, so each is one shifted memcpy;
// the entries that the shift pulled across a line end are zeroed afterwards.
template <class T>
void vol2col(const Geom& g, const T* xn, int64_t r0, int64_t r1, int64_t l0, int64_t l1, T* col) {
  const int64_t cols = (l1 - l0) * g.Z, Z = g.Z;
  for (int64_t r = r0; r < r1; ++r) {
    const Tap t(g, r);
    T* out = col + (r - r0) * cols;
    for_each_x_run(g, l0, l1, [&](int64_t x, int64_t y0, int64_t y1, int64_t off) {
      T* o = out + off;
      const int64_t ix = x + t.a - g.pad;
      int64_t ya, yb;
      t.y_range(g, y0, y1, ya, yb);
      if (ix < 0 || ix >= g.X) ya = yb = y0;
      if (ya > y0) std::memset(o, 0, size_t((ya - y0) * Z) * sizeof(T));
      if (y1 > yb) std::memset(o + (yb - y0) * Z, 0, size_t((y1 - yb) * Z) * sizeof(T));
      const int64_t len = (yb - ya) * Z, d = std::abs(t.dz);
      if (len == 0) return;
      const T* src = xn + ((t.ci * g.X + ix) * g.Y + ya + t.b - g.pad) * Z;  // line (ix, iy(ya)), z = 0
      T* dst = o + (ya - y0) * Z;                                             // dst[j] = src[j + dz]
      const int64_t n = std::max<int64_t>(0, len - d);
      if (t.dz >= 0) std::memcpy(dst, src + std::min(d, len), size_t(n) * sizeof(T));
      else std::memcpy(dst + std::min(d, len), src, size_t(n) * sizeof(T));
      zero_z_borders(dst, yb - ya, g, t);
    });
  }
}

// dx_n[c0:c1] += col2vol(dcol), the adjoint of vol2col for the rows of input channels [c0, c1): the
// same shifted runs, added instead of copied (after zeroing dcol's border entries, which would otherwise
// land on the neighbouring line).
template <class T>
void col2vol(const Geom& g, T* dcol, int64_t c0, int64_t c1, int64_t l0, int64_t l1, T* dxn) {
  const int64_t k3 = g.k * g.k * g.k, cols = (l1 - l0) * g.Z, Z = g.Z;
  for (int64_t ci = c0; ci < c1; ++ci) {
    for (int64_t r = ci * k3; r < (ci + 1) * k3; ++r) {
      const Tap t(g, r);
      T* in = dcol + (r - c0 * k3) * cols;
      for_each_x_run(g, l0, l1, [&](int64_t x, int64_t y0, int64_t y1, int64_t off) {
        const int64_t ix = x + t.a - g.pad;
        int64_t ya, yb;
        t.y_range(g, y0, y1, ya, yb);
        if (ix < 0 || ix >= g.X || yb == ya) return;
        T* src = in + off + (ya - y0) * Z;
        T* dst = dxn + ((t.ci * g.X + ix) * g.Y + ya + t.b - g.pad) * Z;  // dst[j + dz] += src[j]
        zero_z_borders(src, yb - ya, g, t);
        const int64_t len = (yb - ya) * Z;
        const int64_t j0 = std::max<int64_t>(0, -t.dz), j1 = std::min(len, len - t.dz);
#pragma omp simd
        for (int64_t j = j0; j < j1; ++j) dst[j + t.dz] += src[j];
      });
    }
  }
}

}  // namespace

void CpuBackend::conv3d_forward(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, const Conv3dArgs& a) {
  const Geom g = geometry(x, w, a);
  if (conv3d_direct::forward(x, w, b, y, a) || conv3d_small::forward(x, w, b, y, a)) return;  // fast paths
  dispatch_float(x.dtype(), "conv3d_forward", [&](auto tag) {
    using T = decltype(tag);
    const T *px = x.data<T>(), *pw = w.data<T>(), *pb = b.defined() ? b.data<T>() : nullptr;
    T* py = y.data<T>();
    const int64_t S = g.S(), L = g.lines(), XY = g.X * g.Y, Z = g.Z, tiles = g.tiles();
    Scratch<T> scratch;
    parallel_items(g.N * tiles, g.macs(), [&](int64_t item, int thread) {
      const int64_t n = item / tiles, l0 = item % tiles * L, l1 = std::min(XY, l0 + L), ncol = (l1 - l0) * Z;
      const T* xn = px + n * g.Ci * S;
      T* yt = py + n * g.Co * S + l0 * Z;  // this tile's columns of y_n
      for (int64_t co = 0; co < g.Co; ++co) std::fill(yt + co * S, yt + co * S + ncol, pb ? pb[co] : T(0));
      if (g.k == 1) {
        gemm(false, false, g.Co, ncol, g.Ci, T(1), pw, g.Ci, xn + l0 * Z, S, T(1), yt, S);
        return;
      }
      T* col = scratch.get(thread, g.rows() * ncol);
      vol2col(g, xn, 0, g.rows(), l0, l1, col);
      gemm(false, false, g.Co, ncol, g.rows(), T(1), pw, g.rows(), col, ncol, T(1), yt, S);
    });
  });
}

void CpuBackend::conv3d_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv3dArgs& a) {
  const Geom g = geometry(dx, w, a);
  if (conv3d_direct::backward_data(dy, w, dx, a) || conv3d_small::backward_data(dy, w, dx, a)) return;
  dispatch_float(dy.dtype(), "conv3d_backward_data", [&](auto tag) {
    using T = decltype(tag);
    const T *pdy = dy.data<T>(), *pw = w.data<T>();
    T* pdx = dx.data<T>();
    const int64_t S = g.S(), L = g.lines(), XY = g.X * g.Y, Z = g.Z, tiles = g.tiles(), k3 = g.k3();
    if (g.k == 1) {  // dx_n[:, tile] = W^T @ dy_n[:, tile], (sample, tile) pairs in parallel
      parallel_items(g.N * tiles, g.macs(), [&](int64_t item, int) {
        const int64_t n = item / tiles, l0 = item % tiles * L, ncol = (std::min(XY, l0 + L) - l0) * Z;
        gemm(true, false, g.Ci, ncol, g.Co, T(1), pw, g.Ci, pdy + n * g.Co * S + l0 * Z, S, T(0),
             pdx + n * g.Ci * S + l0 * Z, S);
      });
      return;
    }
    // Blocks of input channels: a block owns its rows of dcol and its channels of dx. A few blocks per
    // thread balance the load; the split changes only the GEMMs' M, not any element's sum.
    const int64_t blocks = std::min<int64_t>(g.Ci, 4 * omp_get_max_threads());
    Scratch<T> scratch;
    parallel_items(blocks, g.macs(), [&](int64_t blk, int thread) {
      const int64_t c0 = block_begin(g.Ci, blocks, blk), c1 = block_begin(g.Ci, blocks, blk + 1);
      T* dcol = scratch.get(thread, (c1 - c0) * k3 * L * Z);
      for (int64_t n = 0; n < g.N; ++n) {
        T* dxn = pdx + n * g.Ci * S;
        std::fill(dxn + c0 * S, dxn + c1 * S, T(0));
        for (int64_t l0 = 0; l0 < XY; l0 += L) {
          const int64_t l1 = std::min(XY, l0 + L), ncol = (l1 - l0) * Z;
          gemm(true, false, (c1 - c0) * k3, ncol, g.Co, T(1), pw + c0 * k3, g.rows(), pdy + n * g.Co * S + l0 * Z, S,
               T(0), dcol, ncol);
          col2vol(g, dcol, c0, c1, l0, l1, dxn);
        }
      }
    });
  });
}

void CpuBackend::conv3d_backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, const Conv3dArgs& a) {
  const Geom g = geometry(x, dw, a);
  if (conv3d_direct::backward_filter(x, dy, dw, a) || conv3d_small::backward_filter(x, dy, dw, a)) return;
  dispatch_float(x.dtype(), "conv3d_backward_filter", [&](auto tag) {
    using T = decltype(tag);
    const T *px = x.data<T>(), *pdy = dy.data<T>();
    T* pdw = dw.data<T>();
    const int64_t S = g.S(), L = g.lines(), XY = g.X * g.Y, Z = g.Z, R = g.rows();
    std::vector<T> dwt(size_t(R * g.Co), T(0));  // dW^T [rows, Co]
    // Blocks of rows of dW^T: a block does vol2col and the GEMM for its rows, over all samples and tiles.
    const int64_t blocks = std::min<int64_t>(R, 4 * omp_get_max_threads());
    Scratch<T> scratch;
    parallel_items(blocks, g.macs(), [&](int64_t blk, int thread) {
      const int64_t r0 = block_begin(R, blocks, blk), r1 = block_begin(R, blocks, blk + 1);
      T* out = dwt.data() + r0 * g.Co;
      for (int64_t n = 0; n < g.N; ++n) {
        const T *xn = px + n * g.Ci * S, *dyn = pdy + n * g.Co * S;
        if (g.k == 1) {  // col is x_n itself
          gemm(false, true, r1 - r0, g.Co, S, T(1), xn + r0 * S, S, dyn, S, T(1), out, g.Co);
          continue;
        }
        T* col = scratch.get(thread, (r1 - r0) * L * Z);
        for (int64_t l0 = 0; l0 < XY; l0 += L) {
          const int64_t l1 = std::min(XY, l0 + L), ncol = (l1 - l0) * Z;
          vol2col(g, xn, r0, r1, l0, l1, col);
          gemm(false, true, r1 - r0, g.Co, ncol, T(1), col, ncol, dyn + l0 * Z, S, T(1), out, g.Co);
        }
      }
    });
    for (int64_t co = 0; co < g.Co; ++co)
      for (int64_t r = 0; r < R; ++r) pdw[co * R + r] = dwt[size_t(r * g.Co + co)];
  });
}

}  // namespace hdssl
