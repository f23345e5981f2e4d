// See recording_backend.h. Every member below copies its arguments into a closure that calls the wrapped
// implementation at replay: the closure's [=] copies each Tensor, those passed by const reference too (a
// reference is captured as a copy of the object it names), so the recording keeps their memory.
#include "engine/recording_backend.h"

#include <array>

namespace hdssl {

#define HDSSL_RECORD(call)                       \
  do {                                           \
    BackendImpl* in = &inner_;                   \
    calls_.push_back([=]() mutable { in->call; }); \
  } while (0)

void RecordingBackend::copy_from_host(void*, const void*, size_t) {
  throw Error("host read inside a captured step: copy_from_host reached the recorder");
}
void RecordingBackend::copy_to_host(void*, const void*, size_t) {
  throw Error("host read inside a captured step: copy_to_host reached the recorder");
}
void RecordingBackend::synchronize() {
  throw Error("host read inside a captured step: synchronize reached the recorder");
}
// Tensor::copy_ handed both tensors to the recording before calling this (keep_alive_while_capturing).
void RecordingBackend::copy_device(void* d, const void* s, size_t n) { HDSSL_RECORD(copy_device(d, s, n)); }

void RecordingBackend::fill(Tensor& out, double value) { HDSSL_RECORD(fill(out, value)); }
void RecordingBackend::cast(const Tensor& x, Tensor& out) { HDSSL_RECORD(cast(x, out)); }
void RecordingBackend::axpby(double a, const Tensor& x, double b, const Tensor& y, Tensor& out) {
  HDSSL_RECORD(axpby(a, x, b, y, out));
}
void RecordingBackend::mul(const Tensor& x, const Tensor& y, Tensor& out) {
  HDSSL_RECORD(mul(x, y, out));
}
void RecordingBackend::relu_forward(const Tensor& x, Tensor& y) {
  HDSSL_RECORD(relu_forward(x, y));
}
void RecordingBackend::relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  HDSSL_RECORD(relu_backward(y, dy, dx));
}
void RecordingBackend::sigmoid_forward(const Tensor& x, Tensor& y) {
  HDSSL_RECORD(sigmoid_forward(x, y));
}
void RecordingBackend::sigmoid_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  HDSSL_RECORD(sigmoid_backward(y, dy, dx));
}

void RecordingBackend::sum_all(const Tensor& x, Tensor& out) {
  HDSSL_RECORD(sum_all(x, out));
}
void RecordingBackend::sum_squares(const Tensor& x, Tensor& out) {
  HDSSL_RECORD(sum_squares(x, out));
}
void RecordingBackend::channel_sum(const Tensor& x, Tensor& out) {
  HDSSL_RECORD(channel_sum(x, out));
}

void RecordingBackend::conv3d_forward(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y,
                                      const Conv3dArgs& a) {
  HDSSL_RECORD(conv3d_forward(x, w, b, y, a));
}
void RecordingBackend::conv3d_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv3dArgs& a) {
  HDSSL_RECORD(conv3d_backward_data(dy, w, dx, a));
}
void RecordingBackend::conv3d_backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, const Conv3dArgs& a) {
  HDSSL_RECORD(conv3d_backward_filter(x, dy, dw, a));
}

void RecordingBackend::maxpool2_forward(const Tensor& x, Tensor& y, Tensor& idx) {
  HDSSL_RECORD(maxpool2_forward(x, y, idx));
}
void RecordingBackend::maxpool2_backward(const Tensor& dy, const Tensor& idx, Tensor& dx) {
  HDSSL_RECORD(maxpool2_backward(dy, idx, dx));
}
void RecordingBackend::upsample2_forward(const Tensor& x, Tensor& y) {
  HDSSL_RECORD(upsample2_forward(x, y));
}
void RecordingBackend::upsample2_backward(const Tensor& dy, Tensor& dx) {
  HDSSL_RECORD(upsample2_backward(dy, dx));
}
void RecordingBackend::crop_forward(const Tensor& x, Tensor& y, const int64_t offset[3]) {
  const std::array<int64_t, 3> o{offset[0], offset[1], offset[2]};
  HDSSL_RECORD(crop_forward(x, y, o.data()));
}
void RecordingBackend::crop_backward(const Tensor& dy, Tensor& dx, const int64_t offset[3]) {
  const std::array<int64_t, 3> o{offset[0], offset[1], offset[2]};
  HDSSL_RECORD(crop_backward(dy, dx, o.data()));
}
void RecordingBackend::copy_channels(const Tensor& src, Tensor& dst, int64_t c0, bool reverse) {
  HDSSL_RECORD(copy_channels(src, dst, c0, reverse));
}

void RecordingBackend::batchnorm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& y,
                                               Tensor& save_mean, Tensor& save_invstd, Tensor& running_mean,
                                               Tensor& running_var, const BatchNormArgs& a) {
  HDSSL_RECORD(batchnorm_forward_train(x, gamma, beta, y, save_mean, save_invstd, running_mean, running_var, a));
}
void RecordingBackend::batchnorm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                              const Tensor& running_mean, const Tensor& running_var, Tensor& y,
                                              const BatchNormArgs& a) {
  HDSSL_RECORD(batchnorm_forward_eval(x, gamma, beta, running_mean, running_var, y, a));
}
void RecordingBackend::batchnorm_backward(const Tensor& x, const Tensor& dy, const Tensor& gamma,
                                          const Tensor& save_mean, const Tensor& save_invstd, Tensor& dx,
                                          Tensor& dgamma, Tensor& dbeta) {
  HDSSL_RECORD(batchnorm_backward(x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta));
}

// r (the residual) and dr are optional: an undefined Tensor is recorded as such.
void RecordingBackend::batchnorm_relu_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                                    const Tensor& r, Tensor& y, Tensor& save_mean,
                                                    Tensor& save_invstd, Tensor& running_mean, Tensor& running_var,
                                                    const BatchNormArgs& a) {
  HDSSL_RECORD(
      batchnorm_relu_forward_train(x, gamma, beta, r, y, save_mean, save_invstd, running_mean, running_var, a));
}
void RecordingBackend::batchnorm_relu_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                                   const Tensor& r, const Tensor& running_mean,
                                                   const Tensor& running_var, Tensor& y, const BatchNormArgs& a) {
  HDSSL_RECORD(batchnorm_relu_forward_eval(x, gamma, beta, r, running_mean, running_var, y, a));
}
void RecordingBackend::batchnorm_relu_backward(const Tensor& x, const Tensor& y, const Tensor& dy,
                                               const Tensor& gamma, const Tensor& save_mean,
                                               const Tensor& save_invstd, Tensor& dx, Tensor& dgamma, Tensor& dbeta,
                                               Tensor& dr) {
  HDSSL_RECORD(batchnorm_relu_backward(x, y, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta, dr));
}

void RecordingBackend::matmul(const Tensor& a, const Tensor& b, Tensor& out, bool trans_a, bool trans_b,
                              double alpha, double beta) {
  HDSSL_RECORD(matmul(a, b, out, trans_a, trans_b, alpha, beta));
}
void RecordingBackend::add_row_vector(const Tensor& x, const Tensor& v, Tensor& out) {
  HDSSL_RECORD(add_row_vector(x, v, out));
}

void RecordingBackend::gather_voxels(const Tensor& feat, const Tensor& coords, int level, Tensor& out) {
  HDSSL_RECORD(gather_voxels(feat, coords, level, out));
}
void RecordingBackend::gather_voxels_backward(const Tensor& dout, const Tensor& coords, int level, Tensor& dfeat) {
  HDSSL_RECORD(gather_voxels_backward(dout, coords, level, dfeat));
}

void RecordingBackend::l2norm_forward(const Tensor& x, Tensor& y, Tensor& norms, double eps) {
  HDSSL_RECORD(l2norm_forward(x, y, norms, eps));
}
void RecordingBackend::l2norm_backward(const Tensor& dy, const Tensor& y, const Tensor& norms, Tensor& dx) {
  HDSSL_RECORD(l2norm_backward(dy, y, norms, dx));
}
void RecordingBackend::logsumexp_rows(const Tensor& x, Tensor& out) {
  HDSSL_RECORD(logsumexp_rows(x, out));
}
void RecordingBackend::logsumexp_rows_backward(const Tensor& x, const Tensor& out, const Tensor& dout, Tensor& dx) {
  HDSSL_RECORD(logsumexp_rows_backward(x, out, dout, dx));
}

void RecordingBackend::infonce_forward(const Tensor& za, const Tensor& zb, double tau, Tensor& loss, Tensor& lse_a,
                                       Tensor& lse_b) {
  HDSSL_RECORD(infonce_forward(za, zb, tau, loss, lse_a, lse_b));
}
void RecordingBackend::infonce_backward(const Tensor& za, const Tensor& zb, double tau, const Tensor& lse_a,
                                        const Tensor& lse_b, const Tensor& dloss, Tensor& dza, Tensor& dzb) {
  HDSSL_RECORD(infonce_backward(za, zb, tau, lse_a, lse_b, dloss, dza, dzb));
}
void RecordingBackend::mse_forward(const Tensor& x, const Tensor& target, Tensor& loss) {
  HDSSL_RECORD(mse_forward(x, target, loss));
}
void RecordingBackend::mse_backward(const Tensor& x, const Tensor& target, const Tensor& dloss, Tensor& dx) {
  HDSSL_RECORD(mse_backward(x, target, dloss, dx));
}
void RecordingBackend::bce_logits_forward(const Tensor& x, const Tensor& target, Tensor& loss) {
  HDSSL_RECORD(bce_logits_forward(x, target, loss));
}
void RecordingBackend::bce_logits_backward(const Tensor& x, const Tensor& target, const Tensor& dloss, Tensor& dx) {
  HDSSL_RECORD(bce_logits_backward(x, target, dloss, dx));
}
void RecordingBackend::soft_dice_forward(const Tensor& p, const Tensor& g, Tensor& loss, Tensor& sums) {
  HDSSL_RECORD(soft_dice_forward(p, g, loss, sums));
}
void RecordingBackend::soft_dice_backward(const Tensor& p, const Tensor& g, const Tensor& sums, const Tensor& dloss,
                                          Tensor& dp) {
  HDSSL_RECORD(soft_dice_backward(p, g, sums, dloss, dp));
}

void RecordingBackend::adam_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamArgs& a,
                                 double grad_scale, const Tensor& scale, const Tensor& step_count) {
  HDSSL_RECORD(adam_step(param, grad, m, v, a, grad_scale, scale, step_count));
}
void RecordingBackend::clip_scale(const Tensor& sum_squares, double max_norm, double eps, Tensor& scale) {
  HDSSL_RECORD(clip_scale(sum_squares, max_norm, eps, scale));
}

#undef HDSSL_RECORD

namespace {

class RecordedGraph final : public StepGraph {
 public:
  RecordedGraph(Device d, std::vector<std::function<void()>> calls, std::vector<Tensor> kept)
      : device_(d), calls_(std::move(calls)), kept_(std::move(kept)) {}
  void replay() override {
    for (auto& c : calls_) c();
  }
  size_t nodes() const override { return calls_.size(); }
  Device device() const override { return device_; }

 private:
  Device device_;
  std::vector<std::function<void()>> calls_;
  std::vector<Tensor> kept_;  // tensors whose raw memory a recorded copy names
};

class RecordingCapturer final : public StepCapturer {
 public:
  explicit RecordingCapturer(Device d) : device_(d) {}
  void begin() override {
    BackendImpl& inner = backend_impl(backend(device_));
    recorder_ = std::make_unique<RecordingBackend>(inner);
    set_thread_capture(device_, &inner, recorder_.get(), &kept_);
  }
  std::unique_ptr<StepGraph> end() override {
    clear_thread_capture();
    auto g = std::make_unique<RecordedGraph>(device_, recorder_->take(), std::move(kept_));
    recorder_.reset();
    return g;
  }
  void abort() noexcept override {
    clear_thread_capture();
    recorder_.reset();
    kept_.clear();
  }

 private:
  Device device_;
  std::unique_ptr<RecordingBackend> recorder_;
  std::vector<Tensor> kept_;
};

}  // namespace

std::unique_ptr<StepCapturer> make_recording_capturer(Device device) {
  return std::make_unique<RecordingCapturer>(device);
}

}  // namespace hdssl
