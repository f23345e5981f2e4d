// The backend interface: every primitive the method needs, one documented line each.
//
// Everything above engine/ computes through backend(device).<primitive>(...). Each member checks its
// arguments against the contract below, once for every device (engine/dispatch.cpp), and then calls the
// device's implementation (engine/backend_impl.h: CPU in engine/cpu, CUDA in cuda/), which therefore
// receives validated arguments. A violated contract throws hdssl::Error naming the primitive.
// Conventions for every primitive:
//   - all tensors are defined (unless a line says "optional"), contiguous and on the backend's device;
//     outputs are allocated by the caller (autograd/functions/*.cpp) with the documented shape and are
//     fully overwritten unless the line says "+=";
//   - primitives that compute take float32 or float64, every tensor of one call in the same dtype
//     (int32 only where a line says so: pooling indices, voxel coordinates; fill, cast and copy_channels
//     take any dtype);
//   - volumes are N,C,X,Y,Z (5D); "rows" are the first dimension of a 2D tensor;
//   - an undefined Tensor means "absent" where a line says "optional".
// Adding an op touches: its line here and in backend_impl.h, its checks in dispatch.cpp, the CPU kernel,
// the CUDA kernel, its autograd function in autograd/functions.h, a gradient check, and a CPU-vs-CUDA
// parity test.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

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

class BackendImpl;  // engine/backend_impl.h

class Backend final {
 public:
  explicit Backend(BackendImpl& impl) : impl_{&impl} {}  // the registry makes these (and tests, with a fake)
  Device device() const;

  // ---- memory ----
  void* allocate(size_t bytes);                                  // raw device memory
  void deallocate(void* ptr, size_t bytes);                      // returns it
  void copy_from_host(void* dst, const void* src, size_t bytes);  // host -> this device
  void copy_to_host(void* dst, const void* src, size_t bytes);    // this device -> host
  void copy_device(void* dst, const void* src, size_t bytes);     // within this device
  void synchronize();                                            // wait for queued work
  int64_t free_memory();  // bytes this device can still allocate; -1 when it cannot tell (the CPU)

  // ---- elementwise (same shapes) ----
  void fill(Tensor& out, double value);                               // out = value
  void cast(const Tensor& x, Tensor& out);                             // out = x in out's dtype
  void axpby(double a, const Tensor& x, double b, const Tensor& y, Tensor& out);  // out = a*x + b*y
  void mul(const Tensor& x, const Tensor& y, Tensor& out);             // out = x * y
  void relu_forward(const Tensor& x, Tensor& y);                       // y = max(x, 0); NaN stays NaN
  void relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx);   // dx = dy * (y > 0)
  void sigmoid_forward(const Tensor& x, Tensor& y);                    // y = 1 / (1 + exp(-x))
  void sigmoid_backward(const Tensor& y, const Tensor& dy, Tensor& dx);  // dx = dy * y * (1 - y)

  // ---- reductions ----
  void sum_all(const Tensor& x, Tensor& out);         // out[0] = sum(x); out is [1]
  void sum_squares(const Tensor& x, Tensor& out);     // out[0] += sum(x^2); out is [1] (grad norm)
  // x viewed as [outer, C, inner] with C = x.size(1): out[c] = sum over outer and inner (bias gradients).
  void channel_sum(const Tensor& x, Tensor& out);

  // ---- 3D convolution, stride 1, zero padding, kernel k = 2*pad+1 (or 1 with pad 0) ----
  // x [N,Ci,X,Y,Z], w [Co,Ci,k,k,k], b [Co] optional -> y [N,Co,X,Y,Z]
  void conv3d_forward(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, const Conv3dArgs& a);
  void conv3d_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv3dArgs& a);    // dx = conv^T(dy)
  void conv3d_backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, const Conv3dArgs& a);  // dw = x (*) dy

  // ---- pooling, upsampling, cropping (5D) ----
  // max-pool 2x2x2, stride 2, ceil mode: y [N,C,ceil(X/2),..]; idx (int32, y's shape) = flat argmax in x's XYZ
  void maxpool2_forward(const Tensor& x, Tensor& y, Tensor& idx);
  void maxpool2_backward(const Tensor& dy, const Tensor& idx, Tensor& dx);  // dx = 0; dx[idx] += dy
  void upsample2_forward(const Tensor& x, Tensor& y);    // nearest x2: y [N,C,2X,2Y,2Z]
  void upsample2_backward(const Tensor& dy, Tensor& dx);  // dx = sum of each 2x2x2 block of dy
  // y = x[:, :, o0:o0+Y0, o1:o1+Y1, o2:o2+Y2] (y's shape gives the box); backward writes dy into zeros
  void crop_forward(const Tensor& x, Tensor& y, const int64_t offset[3]);
  void crop_backward(const Tensor& dy, Tensor& dx, const int64_t offset[3]);

  // ---- channel concatenation: tensors viewed as [outer, C, inner] ----
  // dst[:, c0:c0+C_src, :] = src (forward of concat); with `reverse`, src = dst[:, c0:c0+C_src, :] (backward)
  void copy_channels(const Tensor& src, Tensor& dst, int64_t c0, bool reverse);

  // ---- batch normalization over all dims but 1 (5D: N,X,Y,Z; 2D: N) ----
  // training: y = (x - mean) * invstd * gamma + beta with batch statistics; saves mean and invstd [C];
  // updates running_mean / running_var (unbiased) in place; needs more than 1 value per channel.
  void batchnorm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& y,
                               Tensor& save_mean, Tensor& save_invstd, Tensor& running_mean,
                               Tensor& running_var, const BatchNormArgs& a);
  void batchnorm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                              const Tensor& running_mean, const Tensor& running_var, Tensor& y,
                              const BatchNormArgs& a);  // y with running statistics
  // gradients of the training-mode forward: dx, dgamma, dbeta [C]
  void batchnorm_backward(const Tensor& x, const Tensor& dy, const Tensor& gamma, const Tensor& save_mean,
                          const Tensor& save_invstd, Tensor& dx, Tensor& dgamma, Tensor& dbeta);
  // fused batch norm + ReLU (+ residual): y = relu(bn(x) + r), r optional (x's shape, undefined: none); bn(x) is
  // rounded to the dtype before r is added and before the ReLU, so y has the bits of the unfused composition
  // (batchnorm_forward_*, axpby, relu_forward) in float32 and float64 (bf16 x: widened, rounded once at the end);
  // the train form saves and updates exactly as batchnorm_forward_train.
  void batchnorm_relu_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& r,
                                    Tensor& y, Tensor& save_mean, Tensor& save_invstd, Tensor& running_mean,
                                    Tensor& running_var, const BatchNormArgs& a);
  void batchnorm_relu_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& r,
                                   const Tensor& running_mean, const Tensor& running_var, Tensor& y,
                                   const BatchNormArgs& a);
  // its training-mode gradients: g = dy * (y > 0), then dx, dgamma, dbeta as batchnorm_backward(x, g, ...);
  // dr optional (undefined: not wanted) = g
  void batchnorm_relu_backward(const Tensor& x, const Tensor& y, const Tensor& dy, const Tensor& gamma,
                               const Tensor& save_mean, const Tensor& save_invstd, Tensor& dx, Tensor& dgamma,
                               Tensor& dbeta, Tensor& dr);

  // ---- dense linear algebra (2D, row-major) ----
  // out = alpha * op(a) @ op(b) + beta * out, op = transpose when the flag is set
  void matmul(const Tensor& a, const Tensor& b, Tensor& out, bool trans_a, bool trans_b, double alpha,
              double beta);
  void add_row_vector(const Tensor& x, const Tensor& v, Tensor& out);  // out[r,:] = x[r,:] + v (linear bias)

  // ---- voxel gather (the voxel vector of docs/method.md section 3, step 5) ----
  // feat [B,C,X,Y,Z], coords int32 [B,n,3] in full-resolution patch coordinates, level L in [0, 31):
  // out [B*n, C] with out[b*n+k, c] = feat[b, c, floor(v/2^L)] for v = coords[b,k]
  void gather_voxels(const Tensor& feat, const Tensor& coords, int level, Tensor& out);
  // dfeat = 0; scatter-add
  void gather_voxels_backward(const Tensor& dout, const Tensor& coords, int level, Tensor& dfeat);

  // ---- row-wise ops on [N,D] ----
  void l2norm_forward(const Tensor& x, Tensor& y, Tensor& norms, double eps);  // y = x / max(|x|, eps); norms [N]
  void l2norm_backward(const Tensor& dy, const Tensor& y, const Tensor& norms, Tensor& dx);
  void logsumexp_rows(const Tensor& x, Tensor& out);  // out [N] = log sum_j exp(x[i,j]), stable
  // dx = dout * softmax(x) row by row
  void logsumexp_rows_backward(const Tensor& x, const Tensor& out, const Tensor& dout, Tensor& dx);

  // ---- losses (each returns a mean as out [1]) ----
  // symmetric InfoNCE, in-view negatives (docs/method.md section 3, step 7), of za, zb [N,D]; lse_a, lse_b [N] saved.
  // N >= 1, tau > 0.
  void infonce_forward(const Tensor& za, const Tensor& zb, double tau, Tensor& loss, Tensor& lse_a,
                       Tensor& lse_b);
  void infonce_backward(const Tensor& za, const Tensor& zb, double tau, const Tensor& lse_a,
                        const Tensor& lse_b, const Tensor& dloss, Tensor& dza, Tensor& dzb);
  void mse_forward(const Tensor& x, const Tensor& target, Tensor& loss);  // mean((x - t)^2)
  void mse_backward(const Tensor& x, const Tensor& target, const Tensor& dloss, Tensor& dx);
  void bce_logits_forward(const Tensor& x, const Tensor& target, Tensor& loss);  // mean BCE(sigmoid(x), t), stable
  void bce_logits_backward(const Tensor& x, const Tensor& target, const Tensor& dloss, Tensor& dx);
  // soft Dice on probabilities p and targets g [N,K,...]: per (n,k) d = 2 sum(pg) / (sum(p^2) + sum(g^2) + 1);
  // loss = mean over (n,k) of (1 - d); sums [N*K, 3] saved = (sum pg, sum p^2, sum g^2)
  void soft_dice_forward(const Tensor& p, const Tensor& g, Tensor& loss, Tensor& sums);
  void soft_dice_backward(const Tensor& p, const Tensor& g, const Tensor& sums, const Tensor& dloss,
                          Tensor& dp);

  // ---- optimizer ----
  // PyTorch Adam on one parameter tensor: m, v updated in place, param -= lr * mhat / (sqrt(vhat) + eps);
  // grad is first multiplied by grad_scale (gradient-norm clipping folds in here) and, when the optional
  // [1] tensor `scale` of param's dtype is given, by scale[0] read on the device (T(grad_scale) * scale[0]);
  // a.step >= 1. With the optional float64 [1] tensor `step_count` on the device, the step number comes
  // from there instead of a.step: step_count[0] += 1 first, then the bias corrections use it (so a captured
  // step, engine/step_graph.h, replays with the right step; a.step is then ignored but still checked).
  void adam_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamArgs& a,
                 double grad_scale, const Tensor& scale = Tensor(), const Tensor& step_count = Tensor());
  // PyTorch's clip factor on the device, from a sum of squared gradients: scale[0] = min(1, max_norm /
  // (sqrt(sum_squares[0]) + eps)), computed in double whatever the dtype (so it equals the host's
  // clip_coefficient() rounded to the dtype); a NaN sum gives 1 (std::min's rule). Both [1], one dtype;
  // max_norm > 0, eps >= 0.
  void clip_scale(const Tensor& sum_squares, double max_norm, double eps, Tensor& scale);

 private:
  // The implementation a call runs on: impl, or, while this thread captures a step on this backend's
  // device, the recorder standing in for it (engine/step_graph.h). One thread-local test per call.
  struct ImplRef {
    BackendImpl* impl;
    BackendImpl* get() const;
    BackendImpl* operator->() const { return get(); }
    BackendImpl& operator*() const { return *get(); }
  };
  ImplRef impl_;
  friend BackendImpl& backend_impl(Backend& b);
};

// The backend for a device. The CPU backend is always there; CUDA registers its implementation when built
// and a device is present (cuda/backend.cpp). Throws hdssl::Error for an unavailable device.
Backend& backend(Device device);
void register_backend(DeviceKind kind, BackendImpl* impl);
bool cuda_available();  // a CUDA backend was built in and found a device

// Host syncs so far, all devices and threads together: every Backend::copy_to_host (device -> host copies:
// Tensor::item(), to_vector(), to(cpu)) and Backend::synchronize, and every read of a CPU tensor through
// Tensor::item() / to_vector(), which stands in for a device -> host copy on the CPU backend (so that the
// same code counts the same on both). The test of the pretraining step counts them per step.
uint64_t host_sync_count();
void count_host_sync();  // adds one (engine/ only)

// Step capture (engine/step_graph.h) on the calling thread. While a capture is open, a host read or write
// of device memory (Backend::copy_to_host / copy_from_host / synchronize, Tensor::item() / to_vector() of
// a CPU tensor) throws hdssl::Error naming `call`: a captured step runs nothing at capture time, so a value
// read then would be stale at every replay (and CUDA forbids the sync).
void refuse_inside_capture(const char* call);
// The implementation behind a Backend, bypassing any capture redirect (engine/step_graph.cpp).
BackendImpl& backend_impl(Backend& b);
// engine/step_graph.cpp: open / close the calling thread's capture. `recorder`, when not null, receives
// every primitive call made on `device` from this thread (the CPU's recording backend); null: calls run as
// usual (a CUDA stream capture records them itself).
// `redirected` is the implementation the recorder wraps (every Backend of `device` goes to the recorder).
// `keep`, when not null, receives the tensors whose raw memory a recorded call names (Tensor::copy_ calls
// keep_alive_while_capturing on its two tensors before copy_device): the recording holds them.
void set_thread_capture(Device device, BackendImpl* redirected, BackendImpl* recorder,
                        std::vector<Tensor>* keep = nullptr);
void keep_alive_while_capturing(const Tensor& t);
void clear_thread_capture();
bool thread_capturing();

// Deterministic mode (--deterministic): every primitive gives the same bits for the same inputs, run after
// run. The CPU backend always does (for a fixed thread count); the CUDA backend then takes only cuDNN
// algorithms that cuDNN reports deterministic and runs the voxel-gather backward without float atomics
// (one thread per (b, c) feature plane adding its rows in order: the CPU's order, so the same bits).
// Off by default. Set it before the first convolution of a shape (the algorithm cache keys on it).
void set_deterministic(bool on);
bool deterministic();

}  // namespace hdssl
