// The CPU backend: the readable reference implementation of engine/backend.h, float32 and float64.
// Its members receive arguments already checked against the contract (engine/dispatch.cpp).
// One file per op family implements these members (see engine/cpu/README.md); loops are plain and
// parallelised with OpenMP over independent outputs, so results never depend on the thread count
// except through the summation order inside OpenBLAS GEMMs.
#pragma once
#include "engine/backend_impl.h"

namespace hdssl {

class CpuBackend final : public BackendImpl {
 public:
  CpuBackend();  // selects OpenBLAS's kernels once (engine/cpu/blas.h)
  Device device() const override { return Device::cpu(); }

  // memory.cpp
  void* allocate(size_t bytes) override;
  void deallocate(void* ptr, size_t bytes) override;
  void copy_from_host(void* dst, const void* src, size_t bytes) override;
  void copy_to_host(void* dst, const void* src, size_t bytes) override;
  void copy_device(void* dst, const void* src, size_t bytes) override;
  void synchronize() override {}

  // elementwise.cpp
  void fill(Tensor& out, double value) override;
  void cast(const Tensor& x, Tensor& out) override;
  void axpby(double a, const Tensor& x, double b, const Tensor& y, Tensor& out) override;
  void mul(const Tensor& x, const Tensor& y, Tensor& out) override;
  void relu_forward(const Tensor& x, Tensor& y) override;
  void relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx) override;
  void sigmoid_forward(const Tensor& x, Tensor& y) override;
  void sigmoid_backward(const Tensor& y, const Tensor& dy, Tensor& dx) override;

  // reduce.cpp
  void sum_all(const Tensor& x, Tensor& out) override;
  void sum_squares(const Tensor& x, Tensor& out) override;
  void channel_sum(const Tensor& x, Tensor& out) override;

  // conv3d.cpp
  void conv3d_forward(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, const Conv3dArgs& a) override;
  void conv3d_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv3dArgs& a) override;
  void conv3d_backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, const Conv3dArgs& a) override;

  // pool_upsample.cpp
  void maxpool2_forward(const Tensor& x, Tensor& y, Tensor& idx) override;
  void maxpool2_backward(const Tensor& dy, const Tensor& idx, Tensor& dx) override;
  void upsample2_forward(const Tensor& x, Tensor& y) override;
  void upsample2_backward(const Tensor& dy, Tensor& dx) override;
  void crop_forward(const Tensor& x, Tensor& y, const int64_t offset[3]) override;
  void crop_backward(const Tensor& dy, Tensor& dx, const int64_t offset[3]) override;
  void copy_channels(const Tensor& src, Tensor& dst, int64_t c0, bool reverse) override;

  // norm.cpp
  void batchnorm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& y,
                               Tensor& save_mean, Tensor& save_invstd, Tensor& running_mean, Tensor& running_var,
                               const BatchNormArgs& a) override;
  void batchnorm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                              const Tensor& running_var, Tensor& y, const BatchNormArgs& a) override;
  void batchnorm_backward(const Tensor& x, const Tensor& dy, const Tensor& gamma, const Tensor& save_mean,
                          const Tensor& save_invstd, Tensor& dx, Tensor& dgamma, Tensor& dbeta) override;
  void batchnorm_relu_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& r,
                                    Tensor& y, Tensor& save_mean, Tensor& save_invstd, Tensor& running_mean,
                                    Tensor& running_var, const BatchNormArgs& a) override;
  void batchnorm_relu_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& r,
                                   const Tensor& running_mean, const Tensor& running_var, Tensor& y,
                                   const BatchNormArgs& a) override;
  void batchnorm_relu_backward(const Tensor& x, const Tensor& y, const Tensor& dy, const Tensor& gamma,
                               const Tensor& save_mean, const Tensor& save_invstd, Tensor& dx, Tensor& dgamma,
                               Tensor& dbeta, Tensor& dr) override;

  // matmul.cpp
  void matmul(const Tensor& a, const Tensor& b, Tensor& out, bool trans_a, bool trans_b, double alpha,
              double beta) override;
  void add_row_vector(const Tensor& x, const Tensor& v, Tensor& out) override;

  // gather.cpp
  void gather_voxels(const Tensor& feat, const Tensor& coords, int level, Tensor& out) override;
  void gather_voxels_backward(const Tensor& dout, const Tensor& coords, int level, Tensor& dfeat) override;

  // rowwise.cpp
  void l2norm_forward(const Tensor& x, Tensor& y, Tensor& norms, double eps) override;
  void l2norm_backward(const Tensor& dy, const Tensor& y, const Tensor& norms, Tensor& dx) override;
  void logsumexp_rows(const Tensor& x, Tensor& out) override;
  void logsumexp_rows_backward(const Tensor& x, const Tensor& out, const Tensor& dout, Tensor& dx) override;

  // losses.cpp
  void infonce_forward(const Tensor& za, const Tensor& zb, double tau, Tensor& loss, Tensor& lse_a,
                       Tensor& lse_b) override;
  void infonce_backward(const Tensor& za, const Tensor& zb, double tau, const Tensor& lse_a, const Tensor& lse_b,
                        const Tensor& dloss, Tensor& dza, Tensor& dzb) override;
  void mse_forward(const Tensor& x, const Tensor& target, Tensor& loss) override;
  void mse_backward(const Tensor& x, const Tensor& target, const Tensor& dloss, Tensor& dx) override;
  void bce_logits_forward(const Tensor& x, const Tensor& target, Tensor& loss) override;
  void bce_logits_backward(const Tensor& x, const Tensor& target, const Tensor& dloss, Tensor& dx) override;
  void soft_dice_forward(const Tensor& p, const Tensor& g, Tensor& loss, Tensor& sums) override;
  void soft_dice_backward(const Tensor& p, const Tensor& g, const Tensor& sums, const Tensor& dloss,
                          Tensor& dp) override;

  // optim.cpp
  void adam_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamArgs& a,
                 double grad_scale, const Tensor& scale, const Tensor& step_count) override;
  void clip_scale(const Tensor& sum_squares, double max_norm, double eps, Tensor& scale) override;
};

}  // namespace hdssl
