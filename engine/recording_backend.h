// The CPU's step capture (engine/step_graph.h): a BackendImpl decorator that stores each primitive call as
// a closure instead of running it, and replays the closures in order.
//
// Each closure holds its Tensors by value, so their Storage lives as long as the recording: the CPU
// analogue of a CUDA graph's private memory pool (a block a recorded call names is never handed to anyone
// else while the graph exists). Allocation passes through (at capture time, like cudaMalloc from the
// private pool); host reads and writes are refused before they get here (engine/dispatch.cpp). Replay calls
// the wrapped implementation directly: the dispatch's checks ran at capture time, with the same tensors.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "engine/backend_impl.h"
#include "engine/step_graph.h"

namespace hdssl {

class RecordingBackend final : public BackendImpl {
 public:
  explicit RecordingBackend(BackendImpl& inner) : inner_(inner) {}
  // The recorded calls, in order; the recorder is empty afterwards.
  std::vector<std::function<void()>> take() { return std::move(calls_); }
  size_t size() const { return calls_.size(); }

  Device device() const override { return inner_.device(); }
  bool computes_bf16(const char* op) const override { return inner_.computes_bf16(op); }

  void* allocate(size_t bytes) override { return inner_.allocate(bytes); }
  void deallocate(void* p, size_t bytes) override { inner_.deallocate(p, bytes); }
  void copy_from_host(void* d, const void* s, size_t n) override;  // refused (the dispatch refuses first)
  void copy_to_host(void* d, const void* s, size_t n) override;     // refused
  void copy_device(void* d, const void* s, size_t n) override;      // raw pointers: refused (no owner to hold)
  void synchronize() override;                                       // refused
  int64_t free_memory() override { return inner_.free_memory(); }

  void fill(Tensor& out, double value) override;
  void cast(const Tensor& x, Tensor& out) override;
  void axpby(double a, const Tensor& x, double b, const Tensor& y, Tensor& out) override;
  void mul(const Tensor& x, const Tensor& y, Tensor& out) override;
  void relu_forward(const Tensor& x, Tensor& y) override;
  void relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx) override;
  void sigmoid_forward(const Tensor& x, Tensor& y) override;
  void sigmoid_backward(const Tensor& y, const Tensor& dy, Tensor& dx) override;

  void sum_all(const Tensor& x, Tensor& out) override;
  void sum_squares(const Tensor& x, Tensor& out) override;
  void channel_sum(const Tensor& x, Tensor& out) override;

  void conv3d_forward(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, const Conv3dArgs& a) override;
  void conv3d_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv3dArgs& a) override;
  void conv3d_backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, const Conv3dArgs& a) override;

  void maxpool2_forward(const Tensor& x, Tensor& y, Tensor& idx) override;
  void maxpool2_backward(const Tensor& dy, const Tensor& idx, Tensor& dx) override;
  void upsample2_forward(const Tensor& x, Tensor& y) override;
  void upsample2_backward(const Tensor& dy, Tensor& dx) override;
  void crop_forward(const Tensor& x, Tensor& y, const int64_t offset[3]) override;
  void crop_backward(const Tensor& dy, Tensor& dx, const int64_t offset[3]) override;
  void copy_channels(const Tensor& src, Tensor& dst, int64_t c0, bool reverse) override;

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

  void matmul(const Tensor& a, const Tensor& b, Tensor& out, bool trans_a, bool trans_b, double alpha,
              double beta) override;
  void add_row_vector(const Tensor& x, const Tensor& v, Tensor& out) override;

  void gather_voxels(const Tensor& feat, const Tensor& coords, int level, Tensor& out) override;
  void gather_voxels_backward(const Tensor& dout, const Tensor& coords, int level, Tensor& dfeat) override;

  void l2norm_forward(const Tensor& x, Tensor& y, Tensor& norms, double eps) override;
  void l2norm_backward(const Tensor& dy, const Tensor& y, const Tensor& norms, Tensor& dx) override;
  void logsumexp_rows(const Tensor& x, Tensor& out) override;
  void logsumexp_rows_backward(const Tensor& x, const Tensor& out, const Tensor& dout, Tensor& dx) override;

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

  void adam_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamArgs& a, double grad_scale,
                 const Tensor& scale, const Tensor& step_count) override;
  void clip_scale(const Tensor& sum_squares, double max_norm, double eps, Tensor& scale) override;

 private:
  BackendImpl& inner_;
  std::vector<std::function<void()>> calls_;
};

// The CPU's StepCapturer (engine/step_graph.cpp makes it for Device::cpu()).
std::unique_ptr<StepCapturer> make_recording_capturer(Device device);

}  // namespace hdssl
