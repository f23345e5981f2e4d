// What a device backend implements (CPU in engine/cpu, CUDA in cuda/), and the helpers both share.
//
// Callers never see this class: they call hdssl::Backend (engine/backend.h), whose members check every
// argument once (engine/dispatch.cpp) and only then call the matching member here. So an implementation
// may rely on the contract written in engine/backend.h: every tensor defined unless marked optional, on
// this backend's device, contiguous, with the documented shapes and dtypes (float32 or float64 where the
// primitive computes), and scalars in range (pad >= 0, level in [0, 31), tau > 0, Adam step >= 1, ...).
// What only the data can tell (a voxel coordinate outside the volume) stays the implementation's check.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/backend.h"

namespace hdssl {

class BackendImpl {
 public:
  virtual ~BackendImpl() = default;
  virtual Device device() const = 0;
  // Whether this backend has its own bfloat16 kernel for the primitive `op` (its name in engine/backend.h).
  // Where it has none, the dispatch runs the primitive in float32 on widened copies and rounds the outputs
  // (engine/bf16_widening.h), so every primitive takes bf16 on every backend.
  virtual bool computes_bf16(const char* op) const {
    (void)op;
    return false;
  }

  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* ptr, size_t bytes) = 0;
  virtual void copy_from_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_to_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_device(void* dst, const void* src, size_t bytes) = 0;
  virtual void synchronize() = 0;
  // Bytes this device can still allocate, or -1 when the implementation cannot tell. The CPU says -1: the
  // host's memory is the process's to judge (models/memory_estimate.h, available_host_memory()).
  virtual int64_t free_memory() { return -1; }

  virtual void fill(Tensor& out, double value) = 0;
  virtual void cast(const Tensor& x, Tensor& out) = 0;
  virtual void axpby(double a, const Tensor& x, double b, const Tensor& y, Tensor& out) = 0;
  virtual void mul(const Tensor& x, const Tensor& y, Tensor& out) = 0;
  virtual void relu_forward(const Tensor& x, Tensor& y) = 0;
  virtual void relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx) = 0;
  virtual void sigmoid_forward(const Tensor& x, Tensor& y) = 0;
  virtual void sigmoid_backward(const Tensor& y, const Tensor& dy, Tensor& dx) = 0;

  virtual void sum_all(const Tensor& x, Tensor& out) = 0;
  virtual void sum_squares(const Tensor& x, Tensor& out) = 0;
  virtual void channel_sum(const Tensor& x, Tensor& out) = 0;

  virtual void conv3d_forward(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, const Conv3dArgs& a) = 0;
  virtual void conv3d_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv3dArgs& a) = 0;
  virtual void conv3d_backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, const Conv3dArgs& a) = 0;

  virtual void maxpool2_forward(const Tensor& x, Tensor& y, Tensor& idx) = 0;
  virtual void maxpool2_backward(const Tensor& dy, const Tensor& idx, Tensor& dx) = 0;
  virtual void upsample2_forward(const Tensor& x, Tensor& y) = 0;
  virtual void upsample2_backward(const Tensor& dy, Tensor& dx) = 0;
  virtual void crop_forward(const Tensor& x, Tensor& y, const int64_t offset[3]) = 0;
  virtual void crop_backward(const Tensor& dy, Tensor& dx, const int64_t offset[3]) = 0;
  virtual void copy_channels(const Tensor& src, Tensor& dst, int64_t c0, bool reverse) = 0;

  virtual void batchnorm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& y,
                                       Tensor& save_mean, Tensor& save_invstd, Tensor& running_mean,
                                       Tensor& running_var, const BatchNormArgs& a) = 0;
  virtual void batchnorm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                      const Tensor& running_mean, const Tensor& running_var, Tensor& y,
                                      const BatchNormArgs& a) = 0;
  virtual void batchnorm_backward(const Tensor& x, const Tensor& dy, const Tensor& gamma, const Tensor& save_mean,
                                  const Tensor& save_invstd, Tensor& dx, Tensor& dgamma, Tensor& dbeta) = 0;
  // r and dr: optional (undefined when absent)
  virtual void batchnorm_relu_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& r,
                                            Tensor& y, Tensor& save_mean, Tensor& save_invstd, Tensor& running_mean,
                                            Tensor& running_var, const BatchNormArgs& a) = 0;
  virtual void batchnorm_relu_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& r,
                                           const Tensor& running_mean, const Tensor& running_var, Tensor& y,
                                           const BatchNormArgs& a) = 0;
  virtual void batchnorm_relu_backward(const Tensor& x, const Tensor& y, const Tensor& dy, const Tensor& gamma,
                                       const Tensor& save_mean, const Tensor& save_invstd, Tensor& dx, Tensor& dgamma,
                                       Tensor& dbeta, Tensor& dr) = 0;

  virtual void matmul(const Tensor& a, const Tensor& b, Tensor& out, bool trans_a, bool trans_b, double alpha,
                      double beta) = 0;
  virtual void add_row_vector(const Tensor& x, const Tensor& v, Tensor& out) = 0;

  virtual void gather_voxels(const Tensor& feat, const Tensor& coords, int level, Tensor& out) = 0;
  virtual void gather_voxels_backward(const Tensor& dout, const Tensor& coords, int level, Tensor& dfeat) = 0;

  virtual void l2norm_forward(const Tensor& x, Tensor& y, Tensor& norms, double eps) = 0;
  virtual void l2norm_backward(const Tensor& dy, const Tensor& y, const Tensor& norms, Tensor& dx) = 0;
  virtual void logsumexp_rows(const Tensor& x, Tensor& out) = 0;
  virtual void logsumexp_rows_backward(const Tensor& x, const Tensor& out, const Tensor& dout, Tensor& dx) = 0;

  virtual void infonce_forward(const Tensor& za, const Tensor& zb, double tau, Tensor& loss, Tensor& lse_a,
                               Tensor& lse_b) = 0;
  virtual void infonce_backward(const Tensor& za, const Tensor& zb, double tau, const Tensor& lse_a,
                                const Tensor& lse_b, const Tensor& dloss, Tensor& dza, Tensor& dzb) = 0;
  virtual void mse_forward(const Tensor& x, const Tensor& target, Tensor& loss) = 0;
  virtual void mse_backward(const Tensor& x, const Tensor& target, const Tensor& dloss, Tensor& dx) = 0;
  virtual void bce_logits_forward(const Tensor& x, const Tensor& target, Tensor& loss) = 0;
  virtual void bce_logits_backward(const Tensor& x, const Tensor& target, const Tensor& dloss, Tensor& dx) = 0;
  virtual void soft_dice_forward(const Tensor& p, const Tensor& g, Tensor& loss, Tensor& sums) = 0;
  virtual void soft_dice_backward(const Tensor& p, const Tensor& g, const Tensor& sums, const Tensor& dloss,
                                  Tensor& dp) = 0;

  virtual void adam_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamArgs& a,
                         double grad_scale, const Tensor& scale,
                         const Tensor& step_count) = 0;  // scale: optional [1]; step_count: optional f64 [1]
  virtual void clip_scale(const Tensor& sum_squares, double max_norm, double eps, Tensor& scale) = 0;
};

// ---- helpers every implementation uses ----

// Calls f(T{}) with T = float or double according to dtype. The dispatch has already refused other
// dtypes for every floating-point primitive; the throw is the last guard, not the contract.
template <class F>
void dispatch_float(DType t, const char* op, F&& f) {
  if (t == DType::F32) f(float{});
  else if (t == DType::F64) f(double{});
  else throw Error(std::string(op) + ": expected a float32 or float64 tensor, got " + dtype_name(t));
}

// x viewed as [outer, C, inner] with outer = size(0), C = size(1) (x has at least 2 dims): the layout of
// batch norm and of channel sums, for volumes (inner = X*Y*Z) and rows (inner = 1) alike.
struct ChannelView {
  int64_t outer, C, inner;
  int64_t count() const { return outer * inner; }  // values per channel
};
inline ChannelView channel_view(const Tensor& x) {
  const int64_t outer = x.size(0), C = x.size(1);
  return {outer, C, outer * C == 0 ? 0 : x.numel() / (outer * C)};
}

}  // namespace hdssl
