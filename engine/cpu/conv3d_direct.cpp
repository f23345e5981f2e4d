// The direct 3x3x3 conv3d for float32 (see conv3d_direct.h): padding, weight packing, tiling and threads.
// The arithmetic lives in the micro-kernels (conv3d_direct_kernels.inc), one copy per instruction set.
//
// Every pass first copies its volume input into a zero-bordered buffer [N][C][X+2][Y+2][Z+2], so that each
// of the 27 taps is a constant offset and the kernels never test a border. Outputs are computed in
// "vectors" of VW consecutive voxels along z:
//   row mode (Z a multiple of VW): the vectors tile each (x, y) line exactly and are written in place;
//   flat mode (other Z): the vectors run along q = y*(Z+2) + z of one x plane, through the two border
//     columns of each line (wasted work, 2/(Z+2)), into a scratch plane copied out afterwards.
// backward_data is the forward pass of dy with the weights transposed (ci <-> co) and mirrored (tap ->
// 26 - tap). backward_filter sums, for each (output channel block, input channel, tap group), over all samples,
// planes and vectors; each output element is summed by one thread in a fixed order, so results do not
// depend on the thread count. Buffers are kept per thread and reused: no allocation once warm.
#include "engine/cpu/conv3d_direct.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "engine/cpu/conv3d_direct_kernels.h"

namespace hdssl::conv3d_direct {
namespace {

Isa env_isa() {
  const char* e = std::getenv("HDSSL_CONV_DIRECT");
  if (!e) return best_isa();
  const std::string s = e;
  if (s == "off" || s == "0" || s == "none") return Isa::none;
  if (s == "avx2") return std::min(Isa::avx2, best_isa());
  return best_isa();
}
Isa g_isa = env_isa();
// HDSSL_CONV_DIRECT=always: the fast path on every shape it covers, ignoring worth_it() (to measure it).
const bool g_always = [] {
  const char* e = std::getenv("HDSSL_CONV_DIRECT");
  return e && std::string(e) == "always";
}();

const Kernels& kernels() { return g_isa == Isa::avx512 ? kernels_avx512() : kernels_avx2(); }

struct Geom {
  int64_t N, Ci, Co, X, Y, Z;
  int64_t Yp() const { return Y + 2; }
  int64_t Zp() const { return Z + 2; }
  int64_t plane() const { return Yp() * Zp(); }          // padded plane
  int64_t cstride() const { return (X + 2) * plane(); }  // padded channel
  int64_t S() const { return X * Y * Z; }
  double macs() const { return double(N) * double(S()) * double(Ci) * double(Co) * 27.0; }
};

Geom geom_of(const Tensor& x_like, const Tensor& w) {
  return Geom{x_like.size(0), w.size(1), w.size(0), x_like.size(2), x_like.size(3), x_like.size(4)};
}

bool applies(const Tensor& t, const Tensor& w, const Conv3dArgs& a) {
  return g_isa != Isa::none && t.dtype() == DType::F32 && w.size(2) == 3 && a.pad == 1 && t.numel() > 0 &&
         w.numel() > 0;
}

// Where the direct path beats vol2col + GEMM (thread CPU time, 1 thread, on the pyramid's levels 32x32x16
// with 32 channels down to 2x2x1 with 512): enough voxels per plane to fill the vector tiles (8x4 still
// wins at 128 channels; 4x2 loses 2x at 256, where conv3d_small.cpp wins).
bool worth_it(const Geom& g) { return g_always || (g.Y * g.Z >= 32 && std::max(g.Ci, g.Co) <= 256); }

// Threads for a pass: one below kMinParallelMacs (waking the others costs more), as conv3d.cpp does.
int threads_for(const Geom& g, int64_t items) {
  if (g.macs() < double(1 << 22)) return 1;
  return int(std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), items)));
}

// Reusable per-thread buffers (a pass's caller thread owns its set).
std::vector<float>& buffer(int which, size_t n) {
  thread_local std::vector<float> bufs[4];
  std::vector<float>& b = bufs[which];
  if (b.size() < n) b.resize(n);
  return b;
}

// src [N][C][X][Y][Z] -> dst [N][C][X+2][Y+2][Z+2] with zero borders, then `slack` zero floats.
void pad_volume(const float* src, int64_t NC, const Geom& g, float* dst, int64_t slack, int threads) {
  const int64_t X = g.X, Y = g.Y, Z = g.Z, Zp = g.Zp(), P = g.plane(), cs = g.cstride();
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int64_t c = 0; c < NC; ++c) {
    float* d = dst + c * cs;
    const float* s = src + c * X * Y * Z;
    std::memset(d, 0, size_t(P) * sizeof(float));
    std::memset(d + (X + 1) * P, 0, size_t(P) * sizeof(float));
    for (int64_t x = 0; x < X; ++x) {
      float* dp = d + (x + 1) * P;
      std::memset(dp, 0, size_t(Zp) * sizeof(float));
      std::memset(dp + (Y + 1) * Zp, 0, size_t(Zp) * sizeof(float));
      for (int64_t y = 0; y < Y; ++y) {
        float* row = dp + (y + 1) * Zp;
        row[0] = 0.f;
        std::memcpy(row + 1, s + (x * Y + y) * Z, size_t(Z) * sizeof(float));
        row[Z + 1] = 0.f;
      }
    }
  }
  std::memset(dst + NC * cs, 0, size_t(slack) * sizeof(float));
}

int64_t slack_of(const Kernels& k) { return 4 * int64_t(k.vw) + 64; }

// The vectors of one plane: input plane offsets and (row mode) output plane offsets.
struct Plane {
  bool rows;  // row mode
  int64_t nv;
  std::vector<int64_t> in_off, out_off;
  Plane(const Geom& g, int vw) {
    rows = g.Z % vw == 0;
    if (rows) {
      for (int64_t y = 0; y < g.Y; ++y)
        for (int64_t z = 0; z < g.Z; z += vw) in_off.push_back(y * g.Zp() + z), out_off.push_back(y * g.Z + z);
    } else {
      const int64_t nq = g.Y * g.Zp() - 2;  // q of the last valid output + 1
      for (int64_t q = 0; q < nq; q += vw) in_off.push_back(q), out_off.push_back(q);
    }
    nv = int64_t(in_off.size());
  }
};

// out[n][co][x] planes = sum over ci, taps of wpacked * in_padded, for weight blocks of kernels().cb output
// channels; wpack [blocks][Ci][27][cb]. Shared by forward (in = x) and backward_data (in = dy).
void direct_pass(const Geom& g, const float* in_padded, const float* wpack, const float* bias, float* out) {
  const Kernels& k = kernels();
  const int64_t cb = k.cb, blocks = (g.Co + cb - 1) / cb, P = g.plane(), Zp = g.Zp(), S = g.S();
  const Plane pl(g, k.vw);
  int64_t tapoff[27];
  for (int t = 0; t < 27; ++t) tapoff[t] = t / 9 * P + t / 3 % 3 * Zp + t % 3;
  const int64_t items = g.N * g.X * blocks, scratch_len = pl.nv * k.vw + k.vw;
  const int threads = threads_for(g, items);
  std::vector<float>& scratch_all = buffer(2, size_t(threads * cb * scratch_len));
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1)
  for (int64_t item = 0; item < items; ++item) {
    const int64_t n = item / (g.X * blocks), x = item / blocks % g.X, blk = item % blocks;
    const int64_t co0 = blk * cb, nco = std::min(cb, g.Co - co0);
    const float* in = in_padded + n * g.Ci * g.cstride() + x * P;
    const float* w = wpack + blk * g.Ci * 27 * cb;
    float* outp = out + (n * g.Co + co0) * S + x * g.Y * g.Z;  // plane x of channel co0
    float* scratch = scratch_all.data() + omp_get_thread_num() * cb * scratch_len;
    float* dst[8];
    for (int64_t v0 = 0; v0 < pl.nv; v0 += k.rb) {
      const int nv = int(std::min<int64_t>(k.rb, pl.nv - v0));
      for (int v = 0; v < nv; ++v)
        dst[v] = pl.rows ? outp + pl.out_off[size_t(v0 + v)] : scratch + pl.out_off[size_t(v0 + v)];
      k.forward_tile(in, g.cstride(), g.Ci, tapoff, w, bias ? bias + co0 : nullptr, int(nco), nv,
                     pl.in_off.data() + v0, dst, pl.rows ? S : scratch_len);
    }
    if (!pl.rows)
      for (int64_t co = 0; co < nco; ++co)
        for (int64_t y = 0; y < g.Y; ++y)
          std::memcpy(outp + co * S + y * g.Z, scratch + co * scratch_len + y * Zp, size_t(g.Z) * sizeof(float));
  }
}

bool run_forward(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y) {
  const Geom g = geom_of(x, w);
  const Kernels& k = kernels();
  const int64_t cb = k.cb, blocks = (g.Co + cb - 1) / cb;
  std::vector<float>& xp = buffer(0, size_t(g.N * g.Ci * g.cstride() + slack_of(k)));
  pad_volume(x.data<float>(), g.N * g.Ci, g, xp.data(), slack_of(k), threads_for(g, g.N * g.Ci));
  std::vector<float>& wp = buffer(1, size_t(blocks * g.Ci * 27 * cb));
  const float* pw = w.data<float>();
  for (int64_t co = 0; co < blocks * cb; ++co)
    for (int64_t ci = 0; ci < g.Ci; ++ci)
      for (int t = 0; t < 27; ++t)
        wp[size_t(((co / cb * g.Ci + ci) * 27 + t) * cb + co % cb)] = co < g.Co ? pw[(co * g.Ci + ci) * 27 + t] : 0.f;
  direct_pass(g, xp.data(), wp.data(), b.defined() ? b.data<float>() : nullptr, y.data<float>());
  return true;
}

bool run_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx) {
  const Geom f = geom_of(dy, w);                        // the forward's geometry
  const Geom g{f.N, f.Co, f.Ci, f.X, f.Y, f.Z};          // this pass: dy's Co channels in, Ci out
  const Kernels& k = kernels();
  const int64_t cb = k.cb, blocks = (g.Co + cb - 1) / cb;
  std::vector<float>& dyp = buffer(0, size_t(g.N * g.Ci * g.cstride() + slack_of(k)));
  pad_volume(dy.data<float>(), g.N * g.Ci, g, dyp.data(), slack_of(k), threads_for(g, g.N * g.Ci));
  std::vector<float>& wp = buffer(1, size_t(blocks * g.Ci * 27 * cb));
  const float* pw = w.data<float>();  // [f.Co = g.Ci][f.Ci = g.Co][27]
  for (int64_t o = 0; o < blocks * cb; ++o)  // o: an input channel of the forward
    for (int64_t i = 0; i < g.Ci; ++i)       // i: an output channel of the forward
      for (int t = 0; t < 27; ++t)
        wp[size_t(((o / cb * g.Ci + i) * 27 + t) * cb + o % cb)] = o < g.Co ? pw[(i * g.Co + o) * 27 + (26 - t)] : 0.f;
  direct_pass(g, dyp.data(), wp.data(), nullptr, dx.data<float>());
  return true;
}

bool run_backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw) {
  const Geom g = geom_of(x, dw);
  const Kernels& k = kernels();
  const int64_t P = g.plane(), Zp = g.Zp(), fcb = k.fcb, blocks = (g.Co + fcb - 1) / fcb;
  std::vector<float>& xp = buffer(0, size_t(g.N * g.Ci * g.cstride() + slack_of(k)));
  pad_volume(x.data<float>(), g.N * g.Ci, g, xp.data(), slack_of(k), threads_for(g, g.N * g.Ci));
  const Plane pl(g, k.vw);
  // dy as the kernels read it: in place in row mode; in flat mode copied to planes of q = y*Zp + z with
  // zeros in the border columns (so the wasted vectors add nothing), rounded up to whole vectors.
  const float* dyv = dy.data<float>();
  int64_t dy_plane = g.Y * g.Z;
  if (!pl.rows) {
    dy_plane = pl.nv * k.vw;
    std::vector<float>& dq = buffer(1, size_t(g.N * g.Co * g.X * dy_plane + k.vw));
    std::fill(dq.begin(), dq.end(), 0.f);
    for (int64_t c = 0; c < g.N * g.Co * g.X; ++c)
      for (int64_t y = 0; y < g.Y; ++y)
        std::memcpy(dq.data() + c * dy_plane + y * Zp, dyv + (c * g.Y + y) * g.Z, size_t(g.Z) * sizeof(float));
    dyv = dq.data();
  }
  const int64_t dy_c = g.X * dy_plane, fnt = k.fnt, groups = 27 / fnt;
  const int64_t items = blocks * g.Ci * groups;
  const int threads = threads_for(g, items);
  float* pdw = dw.data<float>();
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1)
  for (int64_t item = 0; item < items; ++item) {
    const int64_t blk = item / (g.Ci * groups), ci = item / groups % g.Ci, t0 = item % groups * fnt;
    const int64_t co0 = blk * fcb, nco = std::min(fcb, g.Co - co0), a = t0 / 9;
    int64_t sh[27];
    for (int64_t t = 0; t < fnt; ++t) sh[t] = (t0 + t) / 3 % 3 * Zp + (t0 + t) % 3;
    double acc[16 * 27];
    k.filter_tile(xp.data() + ci * g.cstride() + a * P, P, dyv + co0 * dy_c, dy_plane, dy_c, int(nco), g.X, pl.nv,
                  pl.in_off.data(), pl.rows ? pl.out_off.data() : pl.in_off.data(), sh, g.N, g.Ci * g.cstride(),
                  g.Co * dy_c, acc);
    for (int64_t co = 0; co < nco; ++co)
      for (int64_t t = 0; t < fnt; ++t) pdw[((co0 + co) * g.Ci + ci) * 27 + t0 + t] = float(acc[co * fnt + t]);
  }
  return true;
}

}  // namespace

Isa best_isa() {
  static const Isa best = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return Isa::avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
    return Isa::none;
  }();
  return best;
}
Isa isa() { return g_isa; }
void set_isa(Isa i) { g_isa = std::min(i, best_isa()); }
const char* isa_name(Isa i) { return i == Isa::avx512 ? "avx512" : i == Isa::avx2 ? "avx2" : "off"; }

bool forward_always(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, const Conv3dArgs& a) {
  return applies(x, w, a) && run_forward(x, w, b, y);
}
bool backward_data_always(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv3dArgs& a) {
  return applies(dy, w, a) && run_backward_data(dy, w, dx);
}
bool backward_filter_always(const Tensor& x, const Tensor& dy, Tensor& dw, const Conv3dArgs& a) {
  return applies(x, dw, a) && run_backward_filter(x, dy, dw);
}

bool forward(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, const Conv3dArgs& a) {
  return applies(x, w, a) && worth_it(geom_of(x, w)) && run_forward(x, w, b, y);
}
bool backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv3dArgs& a) {
  return applies(dy, w, a) && worth_it(geom_of(dy, w)) && run_backward_data(dy, w, dx);
}
bool backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, const Conv3dArgs& a) {
  return applies(x, dw, a) && worth_it(geom_of(x, dw)) && run_backward_filter(x, dy, dw);
}

}  // namespace hdssl::conv3d_direct
