// Launchers of the CUDA kernels, one block per .cu file (plain C++ declarations, so backend.cpp is
// compiled by the host compiler). Every launcher queues its work on the context's stream and never
// synchronizes. Pointers are device pointers to contiguous data; sizes are 64-bit element counts.
// Instantiated for T = float and double (cast and fill also for int32 and bfloat16). bfloat16 storage
// with float arithmetic (cuda/kernels/compute_type.cuh) also for: axpby, mul, relu_forward/backward,
// add_row_vector, add_channel_bias, maxpool2_forward/backward, upsample2_forward/backward,
// crop_forward/backward and gather_voxels (forward) - the primitives cuda/backend.cpp lists in
// computes_bf16; the others see bfloat16 only through the dispatch's widening.
#pragma once
#include <cstdint>

#include "engine/bf16.h"

namespace hdssl::cuda::kernels {

using hdssl::bf16;

// ---- elementwise.cu ----
template <class T> void fill(T* out, int64_t n, double value);
template <class Tin, class Tout> void cast(const Tin* x, Tout* out, int64_t n);
template <class T> void axpby(double a, const T* x, double b, const T* y, T* out, int64_t n);
template <class T> void mul(const T* x, const T* y, T* out, int64_t n);
template <class T> void relu_forward(const T* x, T* y, int64_t n);
template <class T> void relu_backward(const T* y, const T* dy, T* dx, int64_t n);
template <class T> void sigmoid_forward(const T* x, T* y, int64_t n);
template <class T> void sigmoid_backward(const T* y, const T* dy, T* dx, int64_t n);
template <class T> void add_row_vector(const T* x, const T* v, T* out, int64_t rows, int64_t cols);
// y [outer, C, inner] += b[c] (the bf16 convolution's bias add; instantiated for bfloat16 only)
template <class T> void add_channel_bias(T* y, const T* b, int64_t outer, int64_t C, int64_t inner);
// (copy_channels is one cudaMemcpy2DAsync in backend.cpp)

// ---- reduce.cu ----
template <class T> void sum_all(const T* x, int64_t n, T* out);                // out[0] = sum(x)
template <class T> void sum_squares_accumulate(const T* x, int64_t n, T* out); // out[0] += sum(x^2)
template <class T> void channel_sum(const T* x, int64_t outer, int64_t C, int64_t inner, T* out);

// ---- pool_upsample.cu (planes = N*C; X, Y, Z as named) ----
template <class T> void maxpool2_forward(const T* x, T* y, int32_t* idx, int64_t planes, int64_t X, int64_t Y, int64_t Z);
template <class T> void maxpool2_backward(const T* dy, const int32_t* idx, T* dx, int64_t planes, int64_t X, int64_t Y, int64_t Z);  // X,Y,Z of dx
template <class T> void upsample2_forward(const T* x, T* y, int64_t planes, int64_t X, int64_t Y, int64_t Z);  // X,Y,Z of x
template <class T> void upsample2_backward(const T* dy, T* dx, int64_t planes, int64_t X, int64_t Y, int64_t Z);  // X,Y,Z of dx
// x [planes, X,Y,Z], box [planes, B0,B1,B2] at offset o
template <class T>
void crop_forward(const T* x, T* y, int64_t planes, const int64_t xdims[3], const int64_t box[3], const int64_t o[3]);
template <class T>
void crop_backward(const T* dy, T* dx, int64_t planes, const int64_t xdims[3], const int64_t box[3], const int64_t o[3]);

// ---- norm.cu (x viewed as [outer, C, inner]; gamma/beta may be null = 1/0, dgamma/dbeta may be null) ----
template <class T>
void batchnorm_forward_train(const T* x, const T* gamma, const T* beta, T* y, T* save_mean, T* save_invstd,
                             T* running_mean, T* running_var, int64_t outer, int64_t C, int64_t inner,
                             double momentum, double eps);
template <class T>
void batchnorm_forward_eval(const T* x, const T* gamma, const T* beta, const T* running_mean, const T* running_var,
                            T* y, int64_t outer, int64_t C, int64_t inner, double eps);
template <class T>
void batchnorm_backward(const T* x, const T* dy, const T* gamma, const T* save_mean, const T* save_invstd, T* dx,
                        T* dgamma, T* dbeta, int64_t outer, int64_t C, int64_t inner);
// fused batch norm + ReLU (+ residual r, null when absent; dr null when not wanted)
template <class T>
void batchnorm_relu_forward_train(const T* x, const T* gamma, const T* beta, const T* r, T* y, T* save_mean,
                                  T* save_invstd, T* running_mean, T* running_var, int64_t outer, int64_t C,
                                  int64_t inner, double momentum, double eps);
template <class T>
void batchnorm_relu_forward_eval(const T* x, const T* gamma, const T* beta, const T* r, const T* running_mean,
                                 const T* running_var, T* y, int64_t outer, int64_t C, int64_t inner, double eps);
template <class T>
void batchnorm_relu_backward(const T* x, const T* y, const T* dy, const T* gamma, const T* save_mean,
                             const T* save_invstd, T* dx, T* dgamma, T* dbeta, T* dr, int64_t outer, int64_t C,
                             int64_t inner);

// ---- gather_voxels.cu: feat [B, C, X, Y, Z] (at the level's resolution), coords [B, n, 3] ----
template <class T>
void gather_voxels(const T* feat, const int32_t* coords, T* out, int64_t B, int64_t n, int64_t C, int64_t X,
                   int64_t Y, int64_t Z, int level);
template <class T>
void gather_voxels_backward(const T* dout, const int32_t* coords, T* dfeat, int64_t B, int64_t n, int64_t C,
                            int64_t X, int64_t Y, int64_t Z, int level, bool deterministic);  // no atomics

// ---- rowwise.cu: [rows, cols] ----
template <class T> void l2norm_forward(const T* x, T* y, T* norms, int64_t rows, int64_t cols, double eps);
template <class T> void l2norm_backward(const T* dy, const T* y, const T* norms, T* dx, int64_t rows, int64_t cols);
template <class T> void logsumexp_rows(const T* x, T* out, int64_t rows, int64_t cols);
template <class T>
void logsumexp_rows_backward(const T* x, const T* out, const T* dout, T* dx, int64_t rows, int64_t cols);

// ---- infonce.cu: za, zb [N, D] ----
template <class T>
void infonce_forward(const T* za, const T* zb, int64_t N, int64_t D, double tau, T* loss, T* lse_a, T* lse_b);
template <class T>
void infonce_backward(const T* za, const T* zb, int64_t N, int64_t D, double tau, const T* lse_a, const T* lse_b,
                      const T* dloss, T* dza, T* dzb);
// rows of S computed per GEMM tile (default 1024; tests make it small to exercise the tiling)
void set_infonce_tile_rows(int64_t rows);

// ---- losses.cu ----
template <class T> void mse_forward(const T* x, const T* t, int64_t n, T* loss);
template <class T> void mse_backward(const T* x, const T* t, const T* dloss, T* dx, int64_t n);
template <class T> void bce_logits_forward(const T* x, const T* t, int64_t n, T* loss);
template <class T> void bce_logits_backward(const T* x, const T* t, const T* dloss, T* dx, int64_t n);
// p, g viewed as [planes = N*K, inner]; sums [planes, 3]
template <class T> void soft_dice_forward(const T* p, const T* g, int64_t planes, int64_t inner, T* loss, T* sums);
template <class T>
void soft_dice_backward(const T* p, const T* g, const T* sums, const T* dloss, T* dp, int64_t planes, int64_t inner);

// ---- adam.cu ----
// scale: optional (nullptr) device [1]; the gradient factor is then T(grad_scale) * scale[0]
template <class T>
void adam_step(T* param, const T* grad, T* m, T* v, int64_t n, double lr, double beta1, double beta2, double eps,
               double bias_correction1, double bias_correction2, double grad_scale, const T* scale);
// scale[0] = min(1, max_norm / (sqrt(sum_squares[0]) + eps)) in double, one thread
template <class T> void clip_scale(const T* sum_squares, double max_norm, double eps, T* scale);
// The same update with the step number on the device (a CUDA graph replays it with the right step):
// step_count[0] += 1 (one thread), then every thread computes the bias corrections from it, in double.
template <class T>
void adam_step_counted(T* param, const T* grad, T* m, T* v, int64_t n, double lr, double beta1, double beta2,
                       double eps, double* step_count, double grad_scale, const T* scale);

}  // namespace hdssl::cuda::kernels
