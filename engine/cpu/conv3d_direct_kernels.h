// The micro-kernels of the direct conv3d (conv3d_direct.h), one set per instruction set. Each set is the
// same source, conv3d_direct_kernels.inc, compiled in its own translation unit with its own -m flags
// (conv3d_direct_avx512.cpp, conv3d_direct_avx2.cpp), and is only called on a CPU that has them.
//
// Layouts (all float32):
//   padded input  in[c][Xp][Yp][Zp] (Xp = X+2, Yp = Y+2, Zp = Z+2; zero borders), cstride = Xp*Yp*Zp
//                 floats between channels, plus slack after the last channel so vector loads may overrun;
//   a "vector" is VW consecutive outputs along the flat index q = y*Zp + z of one x plane; the tap (a,b,c)
//                 of output q reads in[x + a][.][.] at plane offset q + b*Zp + c.
#pragma once
#include <cstdint>

namespace hdssl::conv3d_direct {

struct Kernels {
  int vw;  // floats per vector
  int cb;  // output channels per forward tile (weight blocks are packed by this)
  int rb;  // vectors per forward tile
  int fcb; // output channels per backward-filter tile
  int fnt; // taps per backward-filter tile (divides 27; consecutive in (a, b, c) order)
  // Forward tile: for the nco (<= cb) output channels of one weight block wblk [Ci][27][cb] and nv (<= rb)
  // vectors with input plane offsets in_off[v] (from `in`, the plane x of channel 0) and output pointers
  // out[v] (channel stride ostride):  out[v][co*ostride + j] = bias[co] + sum_ci,tap wblk * in[...]
  // (bias may be null). tapoff[27] = a*Yp*Zp + b*Zp + c.
  void (*forward_tile)(const float* in, int64_t cstride, int64_t ci_count, const int64_t* tapoff, const float* wblk,
                       const float* bias, int nco, int nv, const int64_t* in_off, float* const* out, int64_t ostride);
  // Backward-filter tile: for fcb output channels (nco valid), one input channel and fnt taps with input
  // shifts sh[t]: dw[co*fnt + t] = sum over sample groups g, planes p < nplanes and vectors v < nv of
  //   dy[g*group_dy_stride + p*dy_pstride + co*dy_cstride + dy_off[v] + j]
  //   * in[g*group_in_stride + p*in_pstride + in_off[v] + sh[t] + j]
  // (in points at plane a of the input channel: the plane of output plane 0 for these taps).
  void (*filter_tile)(const float* in, int64_t in_pstride, const float* dy, int64_t dy_pstride, int64_t dy_cstride,
                      int nco, int64_t nplanes, int64_t nv, const int64_t* in_off, const int64_t* dy_off,
                      const int64_t* sh, int64_t plane_groups, int64_t group_in_stride, int64_t group_dy_stride,
                      double* dw);
};

const Kernels& kernels_avx512();
const Kernels& kernels_avx2();

}  // namespace hdssl::conv3d_direct
