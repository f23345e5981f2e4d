// The fast path of the CPU conv3d: a direct 3x3x3 convolution (stride 1, pad 1) for float32, with
// register-blocked SIMD micro-kernels (AVX-512 or AVX2+FMA, chosen at run time from the CPU's features).
// conv3d.cpp's GEMM path stays the reference: it serves float64, 1x1x1 kernels, CPUs without AVX2 and the
// shapes where the GEMM is faster, and the fast path is tested against it (tests/engine/test_conv3d_direct).
#pragma once
#include "engine/backend.h"

namespace hdssl::conv3d_direct {

enum class Isa { none, avx2, avx512 };
Isa best_isa();                  // what this CPU supports (none without AVX2+FMA)
Isa isa();                       // what the fast path uses now: best_isa(), or HDSSL_CONV_DIRECT=off|avx2|avx512
void set_isa(Isa i);             // for tests: force an ISA (clamped to best_isa()); Isa::none turns the path off
const char* isa_name(Isa i);

// Each runs the convolution and returns true, or returns false (touching nothing) where the fast path does
// not apply: not float32, kernel not 3x3x3 with pad 1, path off, or a shape where the GEMM path is faster.
// Arguments are those of the Backend members, already checked by the caller.
bool forward(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, const Conv3dArgs& a);
bool backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv3dArgs& a);
bool backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, const Conv3dArgs& a);

// The same, without the shape heuristic (tests call these to compare against the GEMM path on any shape).
bool forward_always(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, const Conv3dArgs& a);
bool backward_data_always(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv3dArgs& a);
bool backward_filter_always(const Tensor& x, const Tensor& dy, Tensor& dw, const Conv3dArgs& a);

}  // namespace hdssl::conv3d_direct
