// The direct conv3d micro-kernels for AVX-512 (this file is compiled with -mavx512f -mfma; see
// conv3d_direct_kernels.inc). 16 floats per vector; 32 vector registers hold the forward tile's
// 4 x 6 accumulators and the backward-filter tile's 3 output channels x 9 taps (one a). (8 x 3 measured
// slower: nine passes over dy instead of three.)
#include "engine/cpu/conv3d_direct_kernels.h"

#define VW 16
#define CB 4
#define RB 6
#define FCB 3
#define FNT 9
#define KERNELS_NAME kernels_avx512
#include "engine/cpu/conv3d_direct_kernels.inc"
