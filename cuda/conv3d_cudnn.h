// 3D convolution (stride 1, "same" zero padding) through cuDNN: forward, backward-data, backward-filter.
#pragma once
#include "engine/tensor.h"

namespace hdssl::cuda {

void conv3d_forward(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, int pad);  // b optional
void conv3d_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, int pad);
void conv3d_backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, int pad);
size_t conv3d_cached_algorithms();  // number of (op, shape) entries chosen so far

}  // namespace hdssl::cuda
