// See recording_backend.h. Every member below copies its arguments (Tensors by value: the recording keeps
// their memory) into a closure that calls the wrapped implementation at replay.
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
  Tensor xx = x, yy = y;
  HDSSL_RECORD(axpby(a, xx, b, yy, out));
}
void RecordingBackend::mul(const Tensor& x, const Tensor& y, Tensor& out) {
  Tensor xx = x, yy = y;
  HDSSL_RECORD(mul(xx, yy, out));
}
void RecordingBackend::relu_forward(const Tensor& x, Tensor& y) {
  Tensor xx = x;
  HDSSL_RECORD(relu_forward(xx, y));
}
void RecordingBackend::relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  Tensor yy = y, d = dy;
  HDSSL_RECORD(relu_backward(yy, d, dx));
}
void RecordingBackend::sigmoid_forward(const Tensor& x, Tensor& y) {
  Tensor xx = x;
  HDSSL_RECORD(sigmoid_forward(xx, y));
}
void RecordingBackend::sigmoid_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  Tensor yy = y, d = dy;
  HDSSL_RECORD(sigmoid_backward(yy, d, dx));
}

void RecordingBackend::sum_all(const Tensor& x, Tensor& out) {
  Tensor xx = x;
  HDSSL_RECORD(sum_all(xx, out));
}
void RecordingBackend::sum_squares(const Tensor& x, Tensor& out) {
  Tensor xx = x;
  HDSSL_RECORD(sum_squares(xx, out));
}
void RecordingBackend::channel_sum(const Tensor& x, Tensor& out) {
  Tensor xx = x;
  HDSSL_RECORD(channel_sum(xx, out));
}

void RecordingBackend::conv3d_forward(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y,
                                      const Conv3dArgs& a) {
  Tensor xx = x, ww = w, bb = b;
  HDSSL_RECORD(conv3d_forward(xx, ww, bb, y, a));
}
void RecordingBackend::conv3d_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv3dArgs& a) {
  Tensor d = dy, ww = w;
  HDSSL_RECORD(conv3d_backward_data(d, ww, dx, a));
}
void RecordingBackend::conv3d_backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, const Conv3dArgs& a) {
  Tensor xx = x, d = dy;
  HDSSL_RECORD(conv3d_backward_filter(xx, d, dw, a));
}

void RecordingBackend::maxpool2_forward(const Tensor& x, Tensor& y, Tensor& idx) {
  Tensor xx = x;
  HDSSL_RECORD(maxpool2_forward(xx, y, idx));
}
void RecordingBackend::maxpool2_backward(const Tensor& dy, const Tensor& idx, Tensor& dx) {
  Tensor d = dy, i = idx;
  HDSSL_RECORD(maxpool2_backward(d, i, dx));
}
void RecordingBackend::upsample2_forward(const Tensor& x, Tensor& y) {
  Tensor xx = x;
  HDSSL_RECORD(upsample2_forward(xx, y));
}
void RecordingBackend::upsample2_backward(const Tensor& dy, Tensor& dx) {
  Tensor d = dy;
  HDSSL_RECORD(upsample2_backward(d, dx));
}
void RecordingBackend::crop_forward(const Tensor& x, Tensor& y, const int64_t offset[3]) {
  Tensor xx = x;
  const std::array<int64_t, 3> o{offset[0], offset[1], offset[2]};
  HDSSL_RECORD(crop_forward(xx, y, o.data()));
}
void RecordingBackend::crop_backward(const Tensor& dy, Tensor& dx, const int64_t offset[3]) {
  Tensor d = dy;
  const std::array<int64_t, 3> o{offset[0], offset[1], offset[2]};
  HDSSL_RECORD(crop_backward(d, dx, o.data()));
}
void RecordingBackend::copy_channels(const Tensor& src, Tensor& dst, int64_t c0, bool reverse) {
  Tensor s = src;
  HDSSL_RECORD(copy_channels(s, dst, c0, reverse));
}

void RecordingBackend::batchnorm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& y,
                                               Tensor& save_mean, Tensor& save_invstd, Tensor& running_mean,
                                               Tensor& running_var, const BatchNormArgs& a) {
  Tensor xx = x, g = gamma, b = beta;
  HDSSL_RECORD(batchnorm_forward_train(xx, g, b, y, save_mean, save_invstd, running_mean, running_var, a));
}
void RecordingBackend::batchnorm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                              const Tensor& running_mean, const Tensor& running_var, Tensor& y,
                                              const BatchNormArgs& a) {
  Tensor xx = x, g = gamma, b = beta, rm = running_mean, rv = running_var;
  HDSSL_RECORD(batchnorm_forward_eval(xx, g, b, rm, rv, y, a));
}
void RecordingBackend::batchnorm_backward(const Tensor& x, const Tensor& dy, const Tensor& gamma,
                                          const Tensor& save_mean, const Tensor& save_invstd, Tensor& dx,
                                          Tensor& dgamma, Tensor& dbeta) {
  Tensor xx = x, d = dy, g = gamma, sm = save_mean, si = save_invstd;
  HDSSL_RECORD(batchnorm_backward(xx, d, g, sm, si, dx, dgamma, dbeta));
}

// r (the residual) and dr are optional: an undefined Tensor is recorded as such.
void RecordingBackend::batchnorm_relu_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                                    const Tensor& r, Tensor& y, Tensor& save_mean,
                                                    Tensor& save_invstd, Tensor& running_mean, Tensor& running_var,
                                                    const BatchNormArgs& a) {
  Tensor xx = x, g = gamma, b = beta, rr = r;
  HDSSL_RECORD(
      batchnorm_relu_forward_train(xx, g, b, rr, y, save_mean, save_invstd, running_mean, running_var, a));
}
void RecordingBackend::batchnorm_relu_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                                   const Tensor& r, const Tensor& running_mean,
                                                   const Tensor& running_var, Tensor& y, const BatchNormArgs& a) {
  Tensor xx = x, g = gamma, b = beta, rr = r, rm = running_mean, rv = running_var;
  HDSSL_RECORD(batchnorm_relu_forward_eval(xx, g, b, rr, rm, rv, y, a));
}
void RecordingBackend::batchnorm_relu_backward(const Tensor& x, const Tensor& y, const Tensor& dy,
                                               const Tensor& gamma, const Tensor& save_mean,
                                               const Tensor& save_invstd, Tensor& dx, Tensor& dgamma, Tensor& dbeta,
                                               Tensor& dr) {
  Tensor xx = x, yy = y, d = dy, g = gamma, sm = save_mean, si = save_invstd;
  HDSSL_RECORD(batchnorm_relu_backward(xx, yy, d, g, sm, si, dx, dgamma, dbeta, dr));
}

void RecordingBackend::matmul(const Tensor& a, const Tensor& b, Tensor& out, bool trans_a, bool trans_b,
                              double alpha, double beta) {
  Tensor aa = a, bb = b;
  HDSSL_RECORD(matmul(aa, bb, out, trans_a, trans_b, alpha, beta));
}
void RecordingBackend::add_row_vector(const Tensor& x, const Tensor& v, Tensor& out) {
  Tensor xx = x, vv = v;
  HDSSL_RECORD(add_row_vector(xx, vv, out));
}

void RecordingBackend::gather_voxels(const Tensor& feat, const Tensor& coords, int level, Tensor& out) {
  Tensor f = feat, c = coords;
  HDSSL_RECORD(gather_voxels(f, c, level, out));
}
void RecordingBackend::gather_voxels_backward(const Tensor& dout, const Tensor& coords, int level, Tensor& dfeat) {
  Tensor d = dout, c = coords;
  HDSSL_RECORD(gather_voxels_backward(d, c, level, dfeat));
}

void RecordingBackend::l2norm_forward(const Tensor& x, Tensor& y, Tensor& norms, double eps) {
  Tensor xx = x;
  HDSSL_RECORD(l2norm_forward(xx, y, norms, eps));
}
void RecordingBackend::l2norm_backward(const Tensor& dy, const Tensor& y, const Tensor& norms, Tensor& dx) {
  Tensor d = dy, yy = y, n = norms;
  HDSSL_RECORD(l2norm_backward(d, yy, n, dx));
}
void RecordingBackend::logsumexp_rows(const Tensor& x, Tensor& out) {
  Tensor xx = x;
  HDSSL_RECORD(logsumexp_rows(xx, out));
}
void RecordingBackend::logsumexp_rows_backward(const Tensor& x, const Tensor& out, const Tensor& dout, Tensor& dx) {
  Tensor xx = x, o = out, d = dout;
  HDSSL_RECORD(logsumexp_rows_backward(xx, o, d, dx));
}

void RecordingBackend::infonce_forward(const Tensor& za, const Tensor& zb, double tau, Tensor& loss, Tensor& lse_a,
                                       Tensor& lse_b) {
  Tensor a = za, b = zb;
  HDSSL_RECORD(infonce_forward(a, b, tau, loss, lse_a, lse_b));
}
void RecordingBackend::infonce_backward(const Tensor& za, const Tensor& zb, double tau, const Tensor& lse_a,
                                        const Tensor& lse_b, const Tensor& dloss, Tensor& dza, Tensor& dzb) {
  Tensor a = za, b = zb, la = lse_a, lb = lse_b, d = dloss;
  HDSSL_RECORD(infonce_backward(a, b, tau, la, lb, d, dza, dzb));
}
void RecordingBackend::mse_forward(const Tensor& x, const Tensor& target, Tensor& loss) {
  Tensor xx = x, t = target;
  HDSSL_RECORD(mse_forward(xx, t, loss));
}
void RecordingBackend::mse_backward(const Tensor& x, const Tensor& target, const Tensor& dloss, Tensor& dx) {
  Tensor xx = x, t = target, d = dloss;
  HDSSL_RECORD(mse_backward(xx, t, d, dx));
}
void RecordingBackend::bce_logits_forward(const Tensor& x, const Tensor& target, Tensor& loss) {
  Tensor xx = x, t = target;
  HDSSL_RECORD(bce_logits_forward(xx, t, loss));
}
void RecordingBackend::bce_logits_backward(const Tensor& x, const Tensor& target, const Tensor& dloss, Tensor& dx) {
  Tensor xx = x, t = target, d = dloss;
  HDSSL_RECORD(bce_logits_backward(xx, t, d, dx));
}
void RecordingBackend::soft_dice_forward(const Tensor& p, const Tensor& g, Tensor& loss, Tensor& sums) {
  Tensor pp = p, gg = g;
  HDSSL_RECORD(soft_dice_forward(pp, gg, loss, sums));
}
void RecordingBackend::soft_dice_backward(const Tensor& p, const Tensor& g, const Tensor& sums, const Tensor& dloss,
                                          Tensor& dp) {
  Tensor pp = p, gg = g, s = sums, d = dloss;
  HDSSL_RECORD(soft_dice_backward(pp, gg, s, d, dp));
}

void RecordingBackend::adam_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamArgs& a,
                                 double grad_scale, const Tensor& scale, const Tensor& step_count) {
  Tensor g = grad, s = scale, c = step_count;
  HDSSL_RECORD(adam_step(param, g, m, v, a, grad_scale, s, c));
}
void RecordingBackend::clip_scale(const Tensor& sum_squares, double max_norm, double eps, Tensor& scale) {
  Tensor s = sum_squares;
  HDSSL_RECORD(clip_scale(s, max_norm, eps, scale));
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
