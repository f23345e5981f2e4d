// The catalogue: every differentiable function of hdssl, one line each. Each is implemented in
// autograd/functions/<family>.cpp with its forward and its backward closure side by side, and each has a
// float64 finite-difference gradient check in tests/autograd/. Each applies the autocast policy to its
// inputs first (autograd/autocast.h: under the default FP32 precision, inputs of one dtype pass untouched).
#pragma once
#include <array>
#include <vector>

#include "autograd/variable.h"
#include "engine/backend.h"

namespace hdssl::ag {

// ---- elementwise (functions/elementwise.cpp) ----
Variable add(const Variable& a, const Variable& b);              // a + b (same shape)
Variable sub(const Variable& a, const Variable& b);              // a - b
Variable mul(const Variable& a, const Variable& b);              // a * b
Variable scale(const Variable& x, double alpha);                 // alpha * x
Variable relu(const Variable& x);                                // max(x, 0)
Variable sigmoid(const Variable& x);                             // 1 / (1 + exp(-x))

// ---- dtype (functions/cast.cpp) ----
Variable cast(const Variable& x, DType dtype);                   // x in another floating dtype; x if it has it

// ---- views (functions/view.cpp) ----
Variable reshape(const Variable& x, const Shape& shape);         // same elements, another shape (-1 once)

// ---- reductions (functions/reduce.cpp) ----
Variable sum(const Variable& x);                                 // [1] = sum of all elements
Variable mean(const Variable& x);                                // [1] = mean of all elements

// ---- convolution, pooling, resampling, cropping, concatenation (functions/conv.cpp, pool.cpp, concat.cpp) ----
Variable conv3d(const Variable& x, const Variable& w, const Variable& b, int pad);  // b optional (undefined)
Variable maxpool2(const Variable& x);                            // 2x2x2, stride 2, ceil mode
Variable upsample2(const Variable& x);                           // nearest, x2 in X, Y, Z
Variable crop(const Variable& x, std::array<int64_t, 3> offset, std::array<int64_t, 3> size);  // spatial box
Variable concat_channels(const std::vector<Variable>& xs);       // along dim 1 (5D volumes or 2D rows)

// ---- normalization (functions/norm.cpp) ----
// Batch norm over all dims but 1. training: batch statistics, updates running_* in place; else running
// statistics (the op is then affine in x). gamma, beta are [C].
Variable batchnorm(const Variable& x, const Variable& gamma, const Variable& beta, Tensor& running_mean,
                   Tensor& running_var, bool training, const BatchNormArgs& args = {});
// relu(batchnorm(x) + residual) in one pass each way, with the composition's bits; residual optional
// (undefined: none, else x's shape). Under --sync-bn, training mode runs the unfused composition.
Variable batchnorm_relu(const Variable& x, const Variable& gamma, const Variable& beta, Tensor& running_mean,
                        Tensor& running_var, bool training, const Variable& residual = Variable(),
                        const BatchNormArgs& args = {});
Variable l2_normalize(const Variable& x, double eps = 1e-12);    // rows of [N,D] to unit length

// ---- dense layers and voxel vectors (functions/linear.cpp, gather.cpp) ----
Variable matmul(const Variable& a, const Variable& b, bool trans_a = false, bool trans_b = false);
Variable linear(const Variable& x, const Variable& w, const Variable& b);  // x [N,in] w [out,in] b [out] optional
Variable gather_voxels(const Variable& feat, const Tensor& coords, int level);  // [B*n, C], floor(v / 2^level)
Variable logsumexp_rows(const Variable& x);                      // [N] from [N,M]

// ---- losses (functions/losses.cpp); targets are constants ----
Variable infonce(const Variable& za, const Variable& zb, double tau);  // docs/method.md section 3, step 7, [1]
Variable mse(const Variable& x, const Tensor& target);                 // mean squared error, [1]
Variable bce_with_logits(const Variable& x, const Tensor& target);     // mean binary cross-entropy, [1]
Variable soft_dice(const Variable& p, const Tensor& target);           // mean over (n,k) of 1 - Dice, [1]

}  // namespace hdssl::ag
