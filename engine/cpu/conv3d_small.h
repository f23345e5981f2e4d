// conv3d on small volumes with many channels (deep pyramid levels), float32 and float64: every sample's
// columns in one GEMM, so the weights are streamed once per pass (see conv3d_small.cpp). Each function
// runs the pass and returns true, or returns false (touching nothing) where the per-sample GEMM path of
// conv3d.cpp is the better one; the *_always variants skip that choice (tests compare them with it).
// Arguments are those of the Backend members, already checked by the caller.
#pragma once
#include "engine/backend.h"

namespace hdssl::conv3d_small {

bool forward(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, const Conv3dArgs& a);
bool backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv3dArgs& a);
bool backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, const Conv3dArgs& a);

bool forward_always(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, const Conv3dArgs& a);
bool backward_data_always(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv3dArgs& a);
bool backward_filter_always(const Tensor& x, const Tensor& dy, Tensor& dw, const Conv3dArgs& a);

}  // namespace hdssl::conv3d_small
