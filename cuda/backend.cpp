// CudaBackend: the engine's backend interface (engine/backend.h) on one CUDA device.
//
// Each method receives arguments already checked against the contract (engine/dispatch.cpp: device, dtype,
// shape) and hands raw pointers to a launcher in cuda/kernels/ or to cuDNN (conv3d_cudnn.cpp) / cuBLAS
// (matmul_cublas.cpp). Everything is queued on the context's single stream; only copy_to_host and
// synchronize wait. Memory comes from the caching allocator.
//
// The backend object and its context are created by init() and deliberately never destroyed: tensors that
// live in static objects may release their storage during program exit, after any destructor of ours
// would have run, and the driver frees everything at exit anyway.
#include "cuda/backend.h"

#include <cmath>
#include <cstring>
#include <mutex>
#include <sstream>
#include <utility>

#include "cuda/async_upload.h"
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/conv3d_cudnn.h"
#include "cuda/kernels/kernels.h"
#include "cuda/matmul_cublas.h"
#include "cuda/step_graph.h"
#include "engine/backend_impl.h"

namespace hdssl::cuda {

void create_context(int device);  // context.cpp

namespace {
namespace k = kernels;

// The primitives this backend runs on bfloat16 tensors itself; the dispatch (engine/dispatch.cpp) widens
// every other one to float32 and rounds its outputs. Native where it pays: the convolutions (cuDNN,
// bf16 tensor cores, float32 accumulation) and the GEMM (cublasGemmEx, float32 accumulation), whose
// results differ from the CPU's widened ones by summation order only; and the bandwidth-bound
// elementwise, pooling, upsampling, cropping and gather kernels, which compute in float with the CPU's
// operations in the CPU's order, so their bits equal the CPU's (tests/cuda/test_bf16.cpp). Reductions,
// batch norm, row-wise ops, losses, the gather backward (atomics), Adam and sigmoid stay widened.
constexpr const char* kNativeBf16[] = {
    "conv3d_forward", "conv3d_backward_data", "conv3d_backward_filter", "matmul",
    "axpby", "mul", "relu_forward", "relu_backward", "add_row_vector",
    "maxpool2_forward", "maxpool2_backward", "upsample2_forward", "upsample2_backward",
    "crop_forward", "crop_backward", "gather_voxels",
};

// dispatch_float (engine/backend_impl.h) plus T = bf16, for the primitives in kNativeBf16.
template <class F>
void dispatch_float_bf16(DType t, const char* op, F&& f) {
  if (t == DType::BF16) f(bf16{});
  else dispatch_float(t, op, std::forward<F>(f));
}

class CudaBackend final : public BackendImpl {
 public:
  Device device() const override { return Device::cuda(ctx().device); }
  bool computes_bf16(const char* op) const override {
    for (const char* name : kNativeBf16)
      if (std::strcmp(op, name) == 0) return true;
    return false;
  }

  // ---- memory ----
  void* allocate(size_t bytes) override { return ctx().alloc.allocate(bytes); }
  void deallocate(void* ptr, size_t) override { ctx().alloc.deallocate(ptr); }
  void copy_from_host(void* dst, const void* src, size_t bytes) override {
    // From pageable memory the call returns once src has been staged, so the caller may free it.
    if (bytes) cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx().stream));
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    if (!bytes) return;
    cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ctx().stream));
    cudaCheck(cudaStreamSynchronize(ctx().stream));
  }
  void copy_device(void* dst, const void* src, size_t bytes) override {
    if (bytes) cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx().stream));
  }
  void synchronize() override { cudaCheck(cudaStreamSynchronize(ctx().stream)); }
  int64_t free_memory() override { return cuda::free_memory(); }

  // ---- elementwise ----
  void fill(Tensor& out, double value) override {
    if (out.dtype() == DType::I32) return k::fill<int32_t>(out.data<int32_t>(), out.numel(), value);
    if (out.dtype() == DType::BF16) return k::fill<bf16>(out.data<bf16>(), out.numel(), value);
    dispatch_float(out.dtype(), "fill", [&](auto tag) {
      using T = decltype(tag);
      k::fill<T>(out.data<T>(), out.numel(), value);
    });
  }
  void cast(const Tensor& x, Tensor& out) override {
    auto to = [&](auto* src) {
      using S = std::remove_const_t<std::remove_pointer_t<decltype(src)>>;
      switch (out.dtype()) {
        case DType::F32: return k::cast<S, float>(src, out.data<float>(), x.numel());
        case DType::F64: return k::cast<S, double>(src, out.data<double>(), x.numel());
        case DType::BF16: return k::cast<S, bf16>(src, out.data<bf16>(), x.numel());
        case DType::I32: return k::cast<S, int32_t>(src, out.data<int32_t>(), x.numel());
      }
    };
    switch (x.dtype()) {
      case DType::F32: return to(static_cast<const float*>(x.data<float>()));
      case DType::F64: return to(static_cast<const double*>(x.data<double>()));
      case DType::BF16: return to(static_cast<const bf16*>(x.data<bf16>()));
      case DType::I32: return to(static_cast<const int32_t*>(x.data<int32_t>()));
    }
  }
  void axpby(double a, const Tensor& x, double b, const Tensor& y, Tensor& out) override {
    dispatch_float_bf16(x.dtype(), "axpby", [&](auto tag) {
      using T = decltype(tag);
      k::axpby<T>(a, x.data<T>(), b, y.data<T>(), out.data<T>(), x.numel());
    });
  }
  void mul(const Tensor& x, const Tensor& y, Tensor& out) override {
    dispatch_float_bf16(x.dtype(), "mul", [&](auto tag) {
      using T = decltype(tag);
      k::mul<T>(x.data<T>(), y.data<T>(), out.data<T>(), x.numel());
    });
  }
  void relu_forward(const Tensor& x, Tensor& y) override {
    dispatch_float_bf16(x.dtype(), "relu_forward", [&](auto tag) {
      using T = decltype(tag);
      k::relu_forward<T>(x.data<T>(), y.data<T>(), x.numel());
    });
  }
  void relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx) override {
    dispatch_float_bf16(y.dtype(), "relu_backward", [&](auto tag) {
      using T = decltype(tag);
      k::relu_backward<T>(y.data<T>(), dy.data<T>(), dx.data<T>(), y.numel());
    });
  }
  void sigmoid_forward(const Tensor& x, Tensor& y) override {
    dispatch_float(x.dtype(), "sigmoid_forward", [&](auto tag) {
      using T = decltype(tag);
      k::sigmoid_forward<T>(x.data<T>(), y.data<T>(), x.numel());
    });
  }
  void sigmoid_backward(const Tensor& y, const Tensor& dy, Tensor& dx) override {
    dispatch_float(y.dtype(), "sigmoid_backward", [&](auto tag) {
      using T = decltype(tag);
      k::sigmoid_backward<T>(y.data<T>(), dy.data<T>(), dx.data<T>(), y.numel());
    });
  }

  // ---- reductions ----
  void sum_all(const Tensor& x, Tensor& out) override {
    dispatch_float(x.dtype(), "sum_all", [&](auto tag) {
      using T = decltype(tag);
      k::sum_all<T>(x.data<T>(), x.numel(), out.data<T>());
    });
  }
  void sum_squares(const Tensor& x, Tensor& out) override {
    dispatch_float(x.dtype(), "sum_squares", [&](auto tag) {
      using T = decltype(tag);
      k::sum_squares_accumulate<T>(x.data<T>(), x.numel(), out.data<T>());
    });
  }
  void channel_sum(const Tensor& x, Tensor& out) override {
    const ChannelView v = channel_view(x);
    dispatch_float(x.dtype(), "channel_sum", [&](auto tag) {
      using T = decltype(tag);
      k::channel_sum<T>(x.data<T>(), v.outer, v.C, v.inner, out.data<T>());
    });
  }

  // ---- 3D convolution ----
  void conv3d_forward(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, const Conv3dArgs& a) override {
    cuda::conv3d_forward(x, w, b, y, a.pad);
  }
  void conv3d_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv3dArgs& a) override {
    cuda::conv3d_backward_data(dy, w, dx, a.pad);
  }
  void conv3d_backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, const Conv3dArgs& a) override {
    cuda::conv3d_backward_filter(x, dy, dw, a.pad);
  }

  // ---- pooling, upsampling, cropping ----
  void maxpool2_forward(const Tensor& x, Tensor& y, Tensor& idx) override {
    const int64_t X = x.size(2), Y = x.size(3), Z = x.size(4);
    dispatch_float_bf16(x.dtype(), "maxpool2", [&](auto tag) {
      using T = decltype(tag);
      k::maxpool2_forward<T>(x.data<T>(), y.data<T>(), idx.data<int32_t>(), x.size(0) * x.size(1), X, Y, Z);
    });
  }
  void maxpool2_backward(const Tensor& dy, const Tensor& idx, Tensor& dx) override {
    const int64_t X = dx.size(2), Y = dx.size(3), Z = dx.size(4);
    dispatch_float_bf16(dx.dtype(), "maxpool2_backward", [&](auto tag) {
      using T = decltype(tag);
      k::maxpool2_backward<T>(dy.data<T>(), idx.data<int32_t>(), dx.data<T>(), dx.size(0) * dx.size(1), X, Y, Z);
    });
  }
  void upsample2_forward(const Tensor& x, Tensor& y) override {
    dispatch_float_bf16(x.dtype(), "upsample2", [&](auto tag) {
      using T = decltype(tag);
      k::upsample2_forward<T>(x.data<T>(), y.data<T>(), x.size(0) * x.size(1), x.size(2), x.size(3), x.size(4));
    });
  }
  void upsample2_backward(const Tensor& dy, Tensor& dx) override {
    dispatch_float_bf16(dx.dtype(), "upsample2_backward", [&](auto tag) {
      using T = decltype(tag);
      k::upsample2_backward<T>(dy.data<T>(), dx.data<T>(), dx.size(0) * dx.size(1), dx.size(2), dx.size(3),
                               dx.size(4));
    });
  }
  void crop_forward(const Tensor& x, Tensor& y, const int64_t offset[3]) override {
    const int64_t xd[3] = {x.size(2), x.size(3), x.size(4)}, box[3] = {y.size(2), y.size(3), y.size(4)};
    dispatch_float_bf16(x.dtype(), "crop", [&](auto tag) {
      using T = decltype(tag);
      k::crop_forward<T>(x.data<T>(), y.data<T>(), x.size(0) * x.size(1), xd, box, offset);
    });
  }
  void crop_backward(const Tensor& dy, Tensor& dx, const int64_t offset[3]) override {
    const int64_t xd[3] = {dx.size(2), dx.size(3), dx.size(4)}, box[3] = {dy.size(2), dy.size(3), dy.size(4)};
    dispatch_float_bf16(dx.dtype(), "crop_backward", [&](auto tag) {
      using T = decltype(tag);
      k::crop_backward<T>(dy.data<T>(), dx.data<T>(), dx.size(0) * dx.size(1), xd, box, offset);
    });
  }

  // ---- channel concatenation: one strided 2D copy (rows = outer, row = the channel block) ----
  void copy_channels(const Tensor& src, Tensor& dst, int64_t c0, bool reverse) override {
    const int64_t outer = src.size(0), Cs = src.size(1), Cd = dst.size(1);
    const int64_t inner = Cs == 0 || outer == 0 ? 0 : src.numel() / (outer * Cs);
    const size_t es = dtype_size(src.dtype()), run = size_t(Cs * inner) * es, dpitch = size_t(Cd * inner) * es;
    if (run == 0 || outer == 0) return;
    char* ps = static_cast<char*>(src.raw());
    char* pd = static_cast<char*>(dst.raw()) + size_t(c0 * inner) * es;
    if (reverse)
      cudaCheck(cudaMemcpy2DAsync(ps, run, pd, dpitch, run, size_t(outer), cudaMemcpyDeviceToDevice, ctx().stream));
    else
      cudaCheck(cudaMemcpy2DAsync(pd, dpitch, ps, run, run, size_t(outer), cudaMemcpyDeviceToDevice, ctx().stream));
  }

  // ---- batch normalization ----
  void batchnorm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& y,
                               Tensor& save_mean, Tensor& save_invstd, Tensor& running_mean, Tensor& running_var,
                               const BatchNormArgs& a) override {
    const char* op = "batchnorm_forward_train";
    const ChannelView v = channel_view(x);
    dispatch_float(x.dtype(), op, [&](auto tag) {
      using T = decltype(tag);
      k::batchnorm_forward_train<T>(x.data<T>(), gamma.data<T>(), beta.data<T>(), y.data<T>(),
                                    save_mean.data<T>(), save_invstd.data<T>(), running_mean.data<T>(),
                                    running_var.data<T>(), v.outer, v.C, v.inner, a.momentum, a.eps);
    });
  }
  void batchnorm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                              const Tensor& running_var, Tensor& y, const BatchNormArgs& a) override {
    const char* op = "batchnorm_forward_eval";
    const ChannelView v = channel_view(x);
    dispatch_float(x.dtype(), op, [&](auto tag) {
      using T = decltype(tag);
      k::batchnorm_forward_eval<T>(x.data<T>(), gamma.data<T>(), beta.data<T>(), running_mean.data<T>(),
                                   running_var.data<T>(), y.data<T>(), v.outer, v.C, v.inner, a.eps);
    });
  }
  void batchnorm_backward(const Tensor& x, const Tensor& dy, const Tensor& gamma, const Tensor& save_mean,
                          const Tensor& save_invstd, Tensor& dx, Tensor& dgamma, Tensor& dbeta) override {
    const char* op = "batchnorm_backward";
    const ChannelView v = channel_view(x);
    dispatch_float(x.dtype(), op, [&](auto tag) {
      using T = decltype(tag);
      k::batchnorm_backward<T>(x.data<T>(), dy.data<T>(), gamma.data<T>(), save_mean.data<T>(),
                               save_invstd.data<T>(), dx.data<T>(), dgamma.data<T>(), dbeta.data<T>(),
                               v.outer, v.C, v.inner);
    });
  }
  // fused batch norm + ReLU (+ residual): r and dr are optional, passed as null pointers when undefined
  void batchnorm_relu_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& r,
                                    Tensor& y, Tensor& save_mean, Tensor& save_invstd, Tensor& running_mean,
                                    Tensor& running_var, const BatchNormArgs& a) override {
    const ChannelView v = channel_view(x);
    dispatch_float(x.dtype(), "batchnorm_relu_forward_train", [&](auto tag) {
      using T = decltype(tag);
      const T* pr = r.defined() ? r.data<T>() : nullptr;
      k::batchnorm_relu_forward_train<T>(x.data<T>(), gamma.data<T>(), beta.data<T>(), pr, y.data<T>(),
                                         save_mean.data<T>(), save_invstd.data<T>(), running_mean.data<T>(),
                                         running_var.data<T>(), v.outer, v.C, v.inner, a.momentum, a.eps);
    });
  }
  void batchnorm_relu_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& r,
                                   const Tensor& running_mean, const Tensor& running_var, Tensor& y,
                                   const BatchNormArgs& a) override {
    const ChannelView v = channel_view(x);
    dispatch_float(x.dtype(), "batchnorm_relu_forward_eval", [&](auto tag) {
      using T = decltype(tag);
      const T* pr = r.defined() ? r.data<T>() : nullptr;
      k::batchnorm_relu_forward_eval<T>(x.data<T>(), gamma.data<T>(), beta.data<T>(), pr,
                                        running_mean.data<T>(), running_var.data<T>(), y.data<T>(), v.outer, v.C,
                                        v.inner, a.eps);
    });
  }
  void batchnorm_relu_backward(const Tensor& x, const Tensor& y, const Tensor& dy, const Tensor& gamma,
                               const Tensor& save_mean, const Tensor& save_invstd, Tensor& dx, Tensor& dgamma,
                               Tensor& dbeta, Tensor& dr) override {
    const ChannelView v = channel_view(x);
    dispatch_float(x.dtype(), "batchnorm_relu_backward", [&](auto tag) {
      using T = decltype(tag);
      k::batchnorm_relu_backward<T>(x.data<T>(), y.data<T>(), dy.data<T>(), gamma.data<T>(), save_mean.data<T>(),
                                    save_invstd.data<T>(), dx.data<T>(), dgamma.data<T>(), dbeta.data<T>(),
                                    dr.defined() ? dr.data<T>() : nullptr, v.outer, v.C, v.inner);
    });
  }

  // ---- dense linear algebra ----
  void matmul(const Tensor& a, const Tensor& b, Tensor& out, bool trans_a, bool trans_b, double alpha,
              double beta) override {
    cuda::matmul(a, b, out, trans_a, trans_b, alpha, beta);
  }
  void add_row_vector(const Tensor& x, const Tensor& v, Tensor& out) override {
    dispatch_float_bf16(x.dtype(), "add_row_vector", [&](auto tag) {
      using T = decltype(tag);
      k::add_row_vector<T>(x.data<T>(), v.data<T>(), out.data<T>(), x.size(0), x.size(1));
    });
  }

  // ---- voxel gather ----
  void gather_voxels(const Tensor& feat, const Tensor& coords, int level, Tensor& out) override {
    dispatch_float_bf16(feat.dtype(), "gather_voxels", [&](auto tag) {
      using T = decltype(tag);
      k::gather_voxels<T>(feat.data<T>(), coords.data<int32_t>(), out.data<T>(), feat.size(0), coords.size(1),
                          feat.size(1), feat.size(2), feat.size(3), feat.size(4), level);
    });
  }
  void gather_voxels_backward(const Tensor& dout, const Tensor& coords, int level, Tensor& dfeat) override {
    dispatch_float(dfeat.dtype(), "gather_voxels_backward", [&](auto tag) {
      using T = decltype(tag);
      k::gather_voxels_backward<T>(dout.data<T>(), coords.data<int32_t>(), dfeat.data<T>(), dfeat.size(0),
                                   coords.size(1), dfeat.size(1), dfeat.size(2), dfeat.size(3), dfeat.size(4), level,
                                   deterministic());
    });
  }

  // ---- row-wise ----
  void l2norm_forward(const Tensor& x, Tensor& y, Tensor& norms, double eps) override {
    dispatch_float(x.dtype(), "l2norm_forward", [&](auto tag) {
      using T = decltype(tag);
      k::l2norm_forward<T>(x.data<T>(), y.data<T>(), norms.data<T>(), x.size(0), x.size(1), eps);
    });
  }
  void l2norm_backward(const Tensor& dy, const Tensor& y, const Tensor& norms, Tensor& dx) override {
    dispatch_float(y.dtype(), "l2norm_backward", [&](auto tag) {
      using T = decltype(tag);
      k::l2norm_backward<T>(dy.data<T>(), y.data<T>(), norms.data<T>(), dx.data<T>(), y.size(0), y.size(1));
    });
  }
  void logsumexp_rows(const Tensor& x, Tensor& out) override {
    dispatch_float(x.dtype(), "logsumexp_rows", [&](auto tag) {
      using T = decltype(tag);
      k::logsumexp_rows<T>(x.data<T>(), out.data<T>(), x.size(0), x.size(1));
    });
  }
  void logsumexp_rows_backward(const Tensor& x, const Tensor& out, const Tensor& dout, Tensor& dx) override {
    dispatch_float(x.dtype(), "logsumexp_rows_backward", [&](auto tag) {
      using T = decltype(tag);
      k::logsumexp_rows_backward<T>(x.data<T>(), out.data<T>(), dout.data<T>(), dx.data<T>(), x.size(0), x.size(1));
    });
  }

  // ---- losses ----
  void infonce_forward(const Tensor& za, const Tensor& zb, double tau, Tensor& loss, Tensor& lse_a,
                       Tensor& lse_b) override {
    dispatch_float(za.dtype(), "infonce_forward", [&](auto tag) {
      using T = decltype(tag);
      k::infonce_forward<T>(za.data<T>(), zb.data<T>(), za.size(0), za.size(1), tau, loss.data<T>(),
                            lse_a.data<T>(), lse_b.data<T>());
    });
  }
  void infonce_backward(const Tensor& za, const Tensor& zb, double tau, const Tensor& lse_a, const Tensor& lse_b,
                        const Tensor& dloss, Tensor& dza, Tensor& dzb) override {
    dispatch_float(za.dtype(), "infonce_backward", [&](auto tag) {
      using T = decltype(tag);
      k::infonce_backward<T>(za.data<T>(), zb.data<T>(), za.size(0), za.size(1), tau, lse_a.data<T>(),
                             lse_b.data<T>(), dloss.data<T>(), dza.data<T>(), dzb.data<T>());
    });
  }
  void mse_forward(const Tensor& x, const Tensor& target, Tensor& loss) override {
    dispatch_float(x.dtype(), "mse_forward", [&](auto tag) {
      using T = decltype(tag);
      k::mse_forward<T>(x.data<T>(), target.data<T>(), x.numel(), loss.data<T>());
    });
  }
  void mse_backward(const Tensor& x, const Tensor& target, const Tensor& dloss, Tensor& dx) override {
    dispatch_float(x.dtype(), "mse_backward", [&](auto tag) {
      using T = decltype(tag);
      k::mse_backward<T>(x.data<T>(), target.data<T>(), dloss.data<T>(), dx.data<T>(), x.numel());
    });
  }
  void bce_logits_forward(const Tensor& x, const Tensor& target, Tensor& loss) override {
    dispatch_float(x.dtype(), "bce_logits_forward", [&](auto tag) {
      using T = decltype(tag);
      k::bce_logits_forward<T>(x.data<T>(), target.data<T>(), x.numel(), loss.data<T>());
    });
  }
  void bce_logits_backward(const Tensor& x, const Tensor& target, const Tensor& dloss, Tensor& dx) override {
    dispatch_float(x.dtype(), "bce_logits_backward", [&](auto tag) {
      using T = decltype(tag);
      k::bce_logits_backward<T>(x.data<T>(), target.data<T>(), dloss.data<T>(), dx.data<T>(), x.numel());
    });
  }
  void soft_dice_forward(const Tensor& p, const Tensor& g, Tensor& loss, Tensor& sums) override {
    const int64_t NK = p.size(0) * p.size(1);
    dispatch_float(p.dtype(), "soft_dice_forward", [&](auto tag) {
      using T = decltype(tag);
      k::soft_dice_forward<T>(p.data<T>(), g.data<T>(), NK, p.numel() / NK, loss.data<T>(), sums.data<T>());
    });
  }
  void soft_dice_backward(const Tensor& p, const Tensor& g, const Tensor& sums, const Tensor& dloss,
                          Tensor& dp) override {
    const int64_t NK = p.size(0) * p.size(1);
    dispatch_float(p.dtype(), "soft_dice_backward", [&](auto tag) {
      using T = decltype(tag);
      k::soft_dice_backward<T>(p.data<T>(), g.data<T>(), sums.data<T>(), dloss.data<T>(), dp.data<T>(), NK,
                               p.numel() / NK);
    });
  }

  // ---- optimizer ----
  void adam_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamArgs& a,
                 double grad_scale, const Tensor& scale, const Tensor& step_count) override {
    if (step_count.defined()) {  // the step number lives on the device (engine/backend.h)
      dispatch_float(param.dtype(), "adam_step", [&](auto tag) {
        using T = decltype(tag);
        k::adam_step_counted<T>(param.data<T>(), grad.data<T>(), m.data<T>(), v.data<T>(), param.numel(), a.lr,
                                a.beta1, a.beta2, a.eps, step_count.data<double>(), grad_scale,
                                scale.defined() ? scale.data<T>() : nullptr);
      });
      return;
    }
    const double bc1 = 1.0 - std::pow(a.beta1, double(a.step)), bc2 = 1.0 - std::pow(a.beta2, double(a.step));
    dispatch_float(param.dtype(), "adam_step", [&](auto tag) {
      using T = decltype(tag);
      k::adam_step<T>(param.data<T>(), grad.data<T>(), m.data<T>(), v.data<T>(), param.numel(), a.lr, a.beta1,
                      a.beta2, a.eps, bc1, bc2, grad_scale, scale.defined() ? scale.data<T>() : nullptr);
    });
  }
  void clip_scale(const Tensor& sum_squares, double max_norm, double eps, Tensor& scale) override {
    dispatch_float(scale.dtype(), "clip_scale", [&](auto tag) {
      using T = decltype(tag);
      k::clip_scale<T>(sum_squares.data<T>(), max_norm, eps, scale.data<T>());
    });
  }
};

}  // namespace

bool init() {
  static std::mutex mu;
  static bool done = false, ok = false;
  std::lock_guard<std::mutex> lock(mu);
  if (done) return ok;
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    (void)cudaGetLastError();  // no driver or no device: not an error, the CPU backend serves
    done = true;
    return ok = false;
  }
  create_context(0);
  static CudaBackend* backend = new CudaBackend();  // never destroyed (see the note at the top)
  register_backend(DeviceKind::CUDA, backend);
  register_async_upload();  // make_batch_uploader(cuda): pinned staging + copy stream (async_upload.h)
  register_step_capture();  // begin_capture(cuda): CUDA graphs with a private pool (step_graph.h)
  done = true;
  return ok = true;
}

std::string device_summary() {
  if (!has_context()) return "no CUDA device";
  cudaDeviceProp p{};
  cudaCheck(cudaGetDeviceProperties(&p, ctx().device));
  int cublas_version = 0;
  cublasCheck(cublasGetVersion(ctx().cublas, &cublas_version));
  std::ostringstream os;
  os << p.name << " (sm_" << p.major << p.minor << ", " << double(p.totalGlobalMem) / double(1 << 30)
     << " GiB), cuDNN " << cudnnGetVersion() << ", cuBLAS " << cublas_version;
  return os.str();
}

int64_t free_memory() {
  if (!has_context()) return -1;
  size_t free_b = 0, total_b = 0;
  cudaCheck(cudaMemGetInfo(&free_b, &total_b));
  const AllocatorStats st = ctx().alloc.stats();
  return int64_t(free_b) + int64_t(st.bytes_reserved - st.bytes_in_use);  // + the cached, unused blocks
}

}  // namespace hdssl::cuda
