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
  // Forward tile: for the nco (<= cb) output channels of one weight block wblk [Ci][27][cb] and nv (<= rb)
  // vectors with input plane offsets in_off[v] (from `in`, the plane x of channel 0) and output pointers
  // out[v] (channel stride ostride):  out[v][co*ostride + j] = bias[co] + sum_ci,tap wblk * in[...]
  // (bias may be null). tapoff[27] = a*Yp*Zp + b*Zp + c.
  void (*forward_tile)(const float* in, int64_t cstride, int64_t ci_count, const int64_t* tapoff, const float* wblk,
                       const float* bias, int nco, int nv, const int64_t* in_off, float* const* out, int64_t ostride);
  // Backward-filter tile: for fcb output channels (nco valid) and one input channel, the 9 taps (b, c) of
  // one a: dw[co][b*3+c] = sum over planes p < nplanes and vectors v < nv of
  //   dy[p*dy_pstride + co*dy_cstride + dy_off[v] + j] * in[p*in_pstride + in_off[v] + b*Zp + c + j]
  // (in points at plane x + a of the input channel for plane index 0). Writes dw[co*9 + b*3 + c].
  void (*filter_tile)(const float* in, int64_t in_pstride, const float* dy, int64_t dy_pstride, int64_t dy_cstride,
                      int nco, int64_t nplanes, int64_t nv, const int64_t* in_off, const int64_t* dy_off, int64_t Zp,
                      int64_t plane_groups, int64_t group_in_stride, int64_t group_dy_stride, double* dw);
};

const Kernels& kernels_avx512();
const Kernels& kernels_avx2();

}  // namespace hdssl::conv3d_direct
