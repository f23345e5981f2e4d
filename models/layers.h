// The layers the networks are made of: Conv3d, BatchNorm (3D volumes or 2D rows), Linear, and the
// pre-activation ResBlock built from the first two.
// Parameter names and shapes are PyTorch's ("weight", "bias", "running_mean", "running_var",
// "num_batches_tracked"), initialization is PyTorch's default (see module.h).
#pragma once
#include "autograd/functions.h"
#include "models/module.h"

namespace hdssl::models {

// Conv3d(cin, cout, k): stride 1, "same" zero padding (k odd), weight [cout, cin, k, k, k], bias [cout].
class Conv3d : public Module {
 public:
  Conv3d(int64_t cin, int64_t cout, int k, bool bias, Rng& rng, const ModuleOptions& o);
  Variable forward(const Variable& x) const { return ag::conv3d(x, weight, bias, k_ / 2); }
  // A 1x1x1 conv applied to rows [N, cin] (the same numbers as the conv on gathered voxels).
  Variable forward_rows(const Variable& rows) const;
  Variable weight, bias;

 private:
  int k_;
};

// BatchNorm over all dimensions but 1, momentum 0.1, eps 1e-5 (BatchNorm1d / BatchNorm3d).
class BatchNorm : public Module {
 public:
  BatchNorm(int64_t c, const ModuleOptions& o);
  Variable forward(const Variable& x);
  // relu(forward(x) + residual) as one fused op (ag::batchnorm_relu), same numbers; residual optional.
  Variable forward_relu(const Variable& x, const Variable& residual = Variable());
  Variable weight, bias;
  Tensor running_mean, running_var;
  int64_t num_batches_tracked = 0;
};

// Linear(in, out): x [N, in] -> [N, out], weight [out, in].
class Linear : public Module {
 public:
  Linear(int64_t in, int64_t out, Rng& rng, const ModuleOptions& o);
  Variable forward(const Variable& x) const { return ag::linear(x, weight, bias); }
  Variable weight, bias;
};

// ResBlock(c, k): BN -> ReLU -> conv k -> BN -> ReLU -> conv k, plus the identity; PyTorch names
// "layers.{0,2,3,5}". k = 3 in the FPN3d backbone, k = 1 in the non-linear segmentation head.
class ResBlock : public Module {
 public:
  ResBlock(int64_t c, int k, Rng& rng, const ModuleOptions& o);
  Variable forward(const Variable& x);

 private:
  BatchNorm* bn0_; Conv3d* conv2_; BatchNorm* bn3_; Conv3d* conv5_;
};

}  // namespace hdssl::models
