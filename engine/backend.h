// The backend interface: every primitive the method needs, one documented line each.
//
// A backend (CPU in engine/cpu, CUDA in cuda/) implements these for float32 and float64 tensors on its
// device. Conventions for every primitive:
//   - all tensors are contiguous and on the backend's device; outputs are allocated by the caller
//     (engine/ops.h) with the documented shape and are fully overwritten unless the line says "+=";
//   - volumes are N,C,X,Y,Z (5D); "rows" are the first dimension of a 2D tensor;
//   - an undefined Tensor means "absent" where a line says "optional".
// Adding an op touches: its line here, the CPU kernel, the CUDA kernel, its autograd function in
// autograd/functions.h, a gradient check, and a CPU-vs-CUDA parity test.
#pragma once
#include <cstddef>
#include <cstdint>

#include "engine/device.h"
#include "engine/tensor.h"

namespace hdssl {

struct Conv3dArgs {
  int pad = 1;  // zero padding on every side; stride is always 1 ("same" conv for odd kernels)
};

struct BatchNormArgs {
  double momentum = 0.1;  // running = (1 - momentum) * running + momentum * batch (unbiased var)
  double eps = 1e-5;
};

struct AdamArgs {
  double lr = 3e-4, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  int64_t step = 1;  // 1-based step number, for bias correction
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;

  // ---- memory ----
  virtual void* allocate(size_t bytes) = 0;                                  // raw device memory
  virtual void deallocate(void* ptr, size_t bytes) = 0;                      // returns it
  virtual void copy_from_host(void* dst, const void* src, size_t bytes) = 0;  // host -> this device
  virtual void copy_to_host(void* dst, const void* src, size_t bytes) = 0;    // this device -> host
  virtual void copy_device(void* dst, const void* src, size_t bytes) = 0;     // within this device
  virtual void synchronize() = 0;                                            // wait for queued work

  // ---- elementwise (same shapes) ----
  virtual void fill(Tensor& out, double value) = 0;                               // out = value
  virtual void cast(const Tensor& x, Tensor& out) = 0;                             // out = x in out's dtype
  virtual void axpby(double a, const Tensor& x, double b, const Tensor& y, Tensor& out) = 0;  // out = a*x + b*y
  virtual void mul(const Tensor& x, const Tensor& y, Tensor& out) = 0;             // out = x * y
  virtual void relu_forward(const Tensor& x, Tensor& y) = 0;                       // y = max(x, 0); NaN stays NaN
  virtual void relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx) = 0;   // dx = dy * (y > 0)
  virtual void sigmoid_forward(const Tensor& x, Tensor& y) = 0;                    // y = 1 / (1 + exp(-x))
  virtual void sigmoid_backward(const Tensor& y, const Tensor& dy, Tensor& dx) = 0;  // dx = dy * y * (1 - y)

  // ---- reductions ----
  virtual void sum_all(const Tensor& x, Tensor& out) = 0;         // out[0] = sum(x); out is [1]
  virtual void sum_squares(const Tensor& x, Tensor& out) = 0;     // out[0] += sum(x^2); out is [1] (grad norm)
  // x viewed as [outer, C, inner] with C = x.size(1): out[c] = sum over outer and inner (bias gradients).
  virtual void channel_sum(const Tensor& x, Tensor& out) = 0;

  // ---- 3D convolution, stride 1, zero padding, kernel k = 2*pad+1 (or 1 with pad 0) ----
  // x [N,Ci,X,Y,Z], w [Co,Ci,k,k,k], b [Co] optional -> y [N,Co,X,Y,Z]
  virtual void conv3d_forward(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, const Conv3dArgs& a) = 0;
  virtual void conv3d_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv3dArgs& a) = 0;    // dx = conv^T(dy)
  virtual void conv3d_backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, const Conv3dArgs& a) = 0;  // dw = x (*) dy

  // ---- pooling, upsampling, cropping (5D) ----
  // max-pool 2x2x2, stride 2, ceil mode: y [N,C,ceil(X/2),..]; idx (int32, y's shape) = flat argmax in x's XYZ
  virtual void maxpool2_forward(const Tensor& x, Tensor& y, Tensor& idx) = 0;
  virtual void maxpool2_backward(const Tensor& dy, const Tensor& idx, Tensor& dx) = 0;  // dx = 0; dx[idx] += dy
  virtual void upsample2_forward(const Tensor& x, Tensor& y) = 0;    // nearest x2: y [N,C,2X,2Y,2Z]
  virtual void upsample2_backward(const Tensor& dy, Tensor& dx) = 0;  // dx = sum of each 2x2x2 block of dy
  // y = x[:, :, o0:o0+Y0, o1:o1+Y1, o2:o2+Y2] (y's shape gives the box); backward writes dy into zeros
  virtual void crop_forward(const Tensor& x, Tensor& y, const int64_t offset[3]) = 0;
  virtual void crop_backward(const Tensor& dy, Tensor& dx, const int64_t offset[3]) = 0;

  // ---- channel concatenation: tensors viewed as [outer, C, inner] ----
  // dst[:, c0:c0+C_src, :] = src (forward of concat); with `reverse`, src = dst[:, c0:c0+C_src, :] (backward)
  virtual void copy_channels(const Tensor& src, Tensor& dst, int64_t c0, bool reverse) = 0;

  // ---- batch normalization over all dims but 1 (5D: N,X,Y,Z; 2D: N) ----
  // training: y = (x - mean) * invstd * gamma + beta with batch statistics; saves mean and invstd [C];
  // updates running_mean / running_var (unbiased) in place.
  virtual void batchnorm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& y,
                                       Tensor& save_mean, Tensor& save_invstd, Tensor& running_mean,
                                       Tensor& running_var, const BatchNormArgs& a) = 0;
  virtual void batchnorm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                      const Tensor& running_mean, const Tensor& running_var, Tensor& y,
                                      const BatchNormArgs& a) = 0;  // y with running statistics
  // gradients of the training-mode forward: dx, dgamma, dbeta [C]
  virtual void batchnorm_backward(const Tensor& x, const Tensor& dy, const Tensor& gamma, const Tensor& save_mean,
                                  const Tensor& save_invstd, Tensor& dx, Tensor& dgamma, Tensor& dbeta) = 0;

  // ---- dense linear algebra (2D, row-major) ----
  // out = alpha * op(a) @ op(b) + beta * out, op = transpose when the flag is set
  virtual void matmul(const Tensor& a, const Tensor& b, Tensor& out, bool trans_a, bool trans_b, double alpha,
                      double beta) = 0;
  virtual void add_row_vector(const Tensor& x, const Tensor& v, Tensor& out) = 0;  // out[r,:] = x[r,:] + v (linear bias)

  // ---- voxel gather (the voxel vector of METHOD.md step 5) ----
  // feat [B,C,X,Y,Z], coords int32 [B,n,3] in full-resolution patch coordinates, level L:
  // out [B*n, C] with out[b*n+k, c] = feat[b, c, floor(v/2^L)] for v = coords[b,k]
  virtual void gather_voxels(const Tensor& feat, const Tensor& coords, int level, Tensor& out) = 0;
  virtual void gather_voxels_backward(const Tensor& dout, const Tensor& coords, int level, Tensor& dfeat) = 0;  // dfeat = 0; scatter-add

  // ---- row-wise ops on [N,D] ----
  virtual void l2norm_forward(const Tensor& x, Tensor& y, Tensor& norms, double eps) = 0;  // y = x / max(|x|, eps); norms [N]
  virtual void l2norm_backward(const Tensor& dy, const Tensor& y, const Tensor& norms, Tensor& dx) = 0;
  virtual void logsumexp_rows(const Tensor& x, Tensor& out) = 0;  // out [N] = log sum_j exp(x[i,j]), stable
  virtual void logsumexp_rows_backward(const Tensor& x, const Tensor& out, const Tensor& dout, Tensor& dx) = 0;  // dx = dout * softmax

  // ---- losses (each returns a mean as out [1]) ----
  // symmetric InfoNCE with in-view negatives (METHOD.md step 7) of za, zb [N,D]; lse_a, lse_b [N] saved.
  virtual void infonce_forward(const Tensor& za, const Tensor& zb, double tau, Tensor& loss, Tensor& lse_a,
                               Tensor& lse_b) = 0;
  virtual void infonce_backward(const Tensor& za, const Tensor& zb, double tau, const Tensor& lse_a,
                                const Tensor& lse_b, const Tensor& dloss, Tensor& dza, Tensor& dzb) = 0;
  virtual void mse_forward(const Tensor& x, const Tensor& target, Tensor& loss) = 0;  // mean((x - t)^2)
  virtual void mse_backward(const Tensor& x, const Tensor& target, const Tensor& dloss, Tensor& dx) = 0;
  virtual void bce_logits_forward(const Tensor& x, const Tensor& target, Tensor& loss) = 0;  // mean BCE(sigmoid(x), t), stable
  virtual void bce_logits_backward(const Tensor& x, const Tensor& target, const Tensor& dloss, Tensor& dx) = 0;
  // soft Dice on probabilities p and targets g [N,K,...]: per (n,k) d = 2 sum(pg) / (sum(p^2) + sum(g^2) + 1);
  // loss = mean over (n,k) of (1 - d); sums [N*K, 3] saved = (sum pg, sum p^2, sum g^2)
  virtual void soft_dice_forward(const Tensor& p, const Tensor& g, Tensor& loss, Tensor& sums) = 0;
  virtual void soft_dice_backward(const Tensor& p, const Tensor& g, const Tensor& sums, const Tensor& dloss,
                                  Tensor& dp) = 0;

  // ---- optimizer ----
  // PyTorch Adam on one parameter tensor: m, v updated in place, param -= lr * mhat / (sqrt(vhat) + eps);
  // grad is first multiplied by grad_scale (gradient-norm clipping folds in here)
  virtual void adam_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamArgs& a,
                         double grad_scale) = 0;
};

// The backend for a device. The CPU backend is always there; CUDA registers itself when built and a
// device is present (cuda/backend.cpp). Throws hdssl::Error for an unavailable device.
Backend& backend(Device device);
void register_backend(DeviceKind kind, Backend* backend);
bool cuda_available();  // a CUDA backend was built in and found a device

}  // namespace hdssl
