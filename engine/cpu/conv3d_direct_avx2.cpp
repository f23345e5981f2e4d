// The direct conv3d micro-kernels for AVX2 + FMA (this file is compiled with -mavx2 -mfma; see
// conv3d_direct_kernels.inc). 8 floats per vector; 16 vector registers hold the forward tile's 4 x 3
// accumulators and the backward-filter tile's 3 output channels x 3 taps (one (a, b) row).
#include "engine/cpu/conv3d_direct_kernels.h"

#define VW 8
#define CB 4
#define RB 3
#define FCB 3
#define FNT 3
#define KERNELS_NAME kernels_avx2
#include "engine/cpu/conv3d_direct_kernels.inc"
