// The dispatch: every primitive's contract (engine/backend.h), checked once for all devices, before the
// device's implementation (engine/backend_impl.h) runs. The backends in engine/cpu and cuda/ check
// nothing of this again. Messages name the primitive and show the offending tensors. bfloat16 calls that
// a backend has no bf16 kernel for run in float32 here (engine/bf16_widening.h).
#include <initializer_list>
#include <utility>

#include "engine/backend.h"
#include "engine/backend_impl.h"
#include "engine/bf16_widening.h"
#include "engine/contract.h"

namespace hdssl {
namespace {

// x [N,Ci,X,Y,Z], w [Co,Ci,k,k,k] with k = 2*pad+1, y [N,Co,X,Y,Z], one float dtype.
void check_conv(const Contract& c, const Tensor& x, const Tensor& w, const Tensor& y, int pad, const char* xn,
                const char* wn, const char* yn) {
  c.volume(x, xn).volume(w, wn).volume(y, yn);
  const int64_t k = w.size(2);
  HDSSL_REQUIRE(c, pad >= 0 && k == 2 * pad + 1 && w.size(3) == k && w.size(4) == k)
      << wn << " " << w.describe() << " needs a cubic kernel of size 2*pad+1 with pad " << pad;
  HDSSL_REQUIRE(c, x.size(1) == w.size(1) && x.dtype() == w.dtype())
      << xn << " " << x.describe() << " does not match " << wn << " " << w.describe();
  c.shaped(y, Shape{x.size(0), w.size(0), x.size(2), x.size(3), x.size(4)}, x, yn);
}

// Max-pool and upsample: the small volume [N,C,ceil(X/2),..] of a big one [N,C,X,Y,Z].
Shape halved(const Tensor& big) {
  return {big.size(0), big.size(1), (big.size(2) + 1) / 2, (big.size(3) + 1) / 2, (big.size(4) + 1) / 2};
}
Shape doubled(const Tensor& small) {
  return {small.size(0), small.size(1), 2 * small.size(2), 2 * small.size(3), 2 * small.size(4)};
}

// A box `small` at offset o inside `big`, both 5D with the same N, C and dtype.
void check_crop(const Contract& c, const Tensor& big, const Tensor& small, const int64_t o[3], const char* bn,
                const char* sn) {
  c.volume(big, bn).volume(small, sn);
  HDSSL_REQUIRE(c, small.size(0) == big.size(0) && small.size(1) == big.size(1) && small.dtype() == big.dtype())
      << bn << " " << big.describe() << " vs box " << sn << " " << small.describe();
  for (int d = 0; d < 3; ++d)
    HDSSL_REQUIRE(c, o[d] >= 0 && o[d] + small.size(2 + d) <= big.size(2 + d))
        << "box of size " << shape_str(small.shape()) << " at offset (" << o[0] << ", " << o[1] << ", " << o[2]
        << ") does not fit in " << big.describe();
}

// feat [B,C,X,Y,Z], coords int32 [B,n,3], rows [B*n, C] of feat's dtype. (Each coordinate's range is the
// backend's check: only the data tells.)
void check_gather(const Contract& c, const Tensor& feat, const Tensor& coords, int level, const Tensor& rows,
                  const char* fn, const char* rn) {
  c.volume(feat, fn).tensor(coords, "coords");
  HDSSL_REQUIRE(c, coords.dim() == 3 && coords.size(0) == feat.size(0) && coords.size(2) == 3 &&
                 coords.dtype() == DType::I32)
      << "coords must be int32 [B,n,3] with B = " << feat.size(0) << ", got " << coords.describe();
  HDSSL_REQUIRE(c, level >= 0 && level < 31) << "level must be in [0, 31), got " << level;
  c.shaped(rows, Shape{feat.size(0) * coords.size(1), feat.size(1)}, feat, rn);
}

// x [N,D] and a per-row [N] of x's dtype.
void check_rows(const Contract& c, const Tensor& x, const Tensor& per_row, const char* xn, const char* rn) {
  c.dims(x, 2, xn).vec(per_row, x.size(0), x, rn);
}

// Batch-norm statistics and affine parameters: [C] of the dtype x computes in (float32 for bf16 x).
using NamedTensors = std::initializer_list<std::pair<const Tensor*, const char*>>;
void check_channel_vectors(const Contract& c, const Tensor& x, NamedTensors vs) {
  for (const auto& [v, name] : vs) c.stats_vec(*v, x.size(1), x, name);
}

// The fused batch norm's optional residual (forward) or its gradient (backward): x's shape and dtype if given.
void check_optional_residual(const Contract& c, const Tensor& x, const Tensor& r, const char* name) {
  if (r.defined()) c.same(x, r, name);
}

void check_infonce(const Contract& c, const Tensor& za, const Tensor& zb, double tau, const Tensor& lse_a,
                   const Tensor& lse_b) {
  c.dims(za, 2, "za").same(za, zb, "zb");
  HDSSL_REQUIRE(c, za.size(0) > 0 && tau > 0) << "za, zb [N,D] with N > 0, tau > 0; got " << za.describe() << ", tau "
                                        << tau;
  c.vec(lse_a, za.size(0), za, "lse_a").vec(lse_b, za.size(0), za, "lse_b");
}

// p [N,K,...] with N*K > 0; sums [N*K, 3].
void check_dice(const Contract& c, const Tensor& p, const Tensor& g, const Tensor& sums) {
  c.dims(p, 2, "p", /*at_least=*/true).same(p, g, "target");
  HDSSL_REQUIRE(c, p.size(0) * p.size(1) > 0) << "p [N,K,...] with N*K > 0 expected, got " << p.describe();
  c.shaped(sums, Shape{p.size(0) * p.size(1), 3}, p, "sums");
}

}  // namespace

Device Backend::device() const { return impl_->device(); }

// ---- memory: raw bytes, no tensor contract ----
void* Backend::allocate(size_t bytes) { return impl_->allocate(bytes); }
void Backend::deallocate(void* ptr, size_t bytes) { impl_->deallocate(ptr, bytes); }
void Backend::copy_from_host(void* dst, const void* src, size_t bytes) {
  refuse_inside_capture("copy_from_host (a host write)");
  impl_->copy_from_host(dst, src, bytes);
}
void Backend::copy_to_host(void* dst, const void* src, size_t bytes) {
  refuse_inside_capture("copy_to_host (Tensor::item / to_vector / to(cpu))");
  count_host_sync();
  impl_->copy_to_host(dst, src, bytes);
}
void Backend::copy_device(void* dst, const void* src, size_t bytes) { impl_->copy_device(dst, src, bytes); }
void Backend::synchronize() {
  refuse_inside_capture("synchronize");
  count_host_sync();
  impl_->synchronize();
}

// ---- elementwise ----
void Backend::fill(Tensor& out, double value) {
  Contract("fill", device()).tensor(out, "out");
  impl_->fill(out, value);
}
void Backend::cast(const Tensor& x, Tensor& out) {
  const Contract c("cast", device());
  c.tensor(x, "x").tensor(out, "out");
  HDSSL_REQUIRE(c, x.shape() == out.shape()) << x.describe() << " -> " << out.describe();
  impl_->cast(x, out);
}
void Backend::axpby(double a, const Tensor& x, double b, const Tensor& y, Tensor& out) {
  Contract("axpby", device()).floating(x, "x").same(x, y, "y").same(x, out, "out");
  Bf16Widening bf(*impl_, "axpby", {&x, &y, &out});
  impl_->axpby(a, bf.in(x), b, bf.in(y), bf.out(out));
  bf.finish();
}
void Backend::mul(const Tensor& x, const Tensor& y, Tensor& out) {
  Contract("mul", device()).floating(x, "x").same(x, y, "y").same(x, out, "out");
  Bf16Widening bf(*impl_, "mul", {&x, &y, &out});
  impl_->mul(bf.in(x), bf.in(y), bf.out(out));
  bf.finish();
}
void Backend::relu_forward(const Tensor& x, Tensor& y) {
  Contract("relu_forward", device()).floating(x, "x").same(x, y, "y");
  Bf16Widening bf(*impl_, "relu_forward", {&x, &y});
  impl_->relu_forward(bf.in(x), bf.out(y));
  bf.finish();
}
void Backend::relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  Contract("relu_backward", device()).floating(y, "y").same(y, dy, "dy").same(y, dx, "dx");
  Bf16Widening bf(*impl_, "relu_backward", {&y, &dy, &dx});
  impl_->relu_backward(bf.in(y), bf.in(dy), bf.out(dx));
  bf.finish();
}
void Backend::sigmoid_forward(const Tensor& x, Tensor& y) {
  Contract("sigmoid_forward", device()).floating(x, "x").same(x, y, "y");
  Bf16Widening bf(*impl_, "sigmoid_forward", {&x, &y});
  impl_->sigmoid_forward(bf.in(x), bf.out(y));
  bf.finish();
}
void Backend::sigmoid_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  Contract("sigmoid_backward", device()).floating(y, "y").same(y, dy, "dy").same(y, dx, "dx");
  Bf16Widening bf(*impl_, "sigmoid_backward", {&y, &dy, &dx});
  impl_->sigmoid_backward(bf.in(y), bf.in(dy), bf.out(dx));
  bf.finish();
}

// ---- reductions ----
void Backend::sum_all(const Tensor& x, Tensor& out) {
  Contract("sum_all", device()).floating(x, "x").scalar(out, x, "out");
  Bf16Widening bf(*impl_, "sum_all", {&x, &out});
  impl_->sum_all(bf.in(x), bf.out(out));
  bf.finish();
}
void Backend::sum_squares(const Tensor& x, Tensor& out) {
  Contract("sum_squares", device()).floating(x, "x").scalar(out, x, "out");
  Bf16Widening bf(*impl_, "sum_squares", {&x, &out});
  impl_->sum_squares(bf.in(x), bf.inout(out));
  bf.finish();
}
void Backend::channel_sum(const Tensor& x, Tensor& out) {
  const Contract c("channel_sum", device());
  c.dims(x, 2, "x", /*at_least=*/true).vec(out, x.size(1), x, "out");
  Bf16Widening bf(*impl_, "channel_sum", {&x, &out});
  impl_->channel_sum(bf.in(x), bf.out(out));
  bf.finish();
}

// ---- 3D convolution ----
void Backend::conv3d_forward(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, const Conv3dArgs& a) {
  const Contract c("conv3d_forward", device());
  check_conv(c, x, w, y, a.pad, "x", "w", "y");
  if (b.defined()) c.vec(b, w.size(0), x, "bias");
  Bf16Widening bf(*impl_, "conv3d_forward", {&x, &w, &b, &y});
  impl_->conv3d_forward(bf.in(x), bf.in(w), bf.in(b), bf.out(y), a);
  bf.finish();
}
void Backend::conv3d_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv3dArgs& a) {
  check_conv(Contract("conv3d_backward_data", device()), dx, w, dy, a.pad, "dx", "w", "dy");
  Bf16Widening bf(*impl_, "conv3d_backward_data", {&dy, &w, &dx});
  impl_->conv3d_backward_data(bf.in(dy), bf.in(w), bf.out(dx), a);
  bf.finish();
}
void Backend::conv3d_backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, const Conv3dArgs& a) {
  check_conv(Contract("conv3d_backward_filter", device()), x, dw, dy, a.pad, "x", "dw", "dy");
  Bf16Widening bf(*impl_, "conv3d_backward_filter", {&x, &dy, &dw});
  impl_->conv3d_backward_filter(bf.in(x), bf.in(dy), bf.out(dw), a);
  bf.finish();
}

// ---- pooling, upsampling, cropping ----
void Backend::maxpool2_forward(const Tensor& x, Tensor& y, Tensor& idx) {
  const Contract c("maxpool2_forward", device());
  c.volume(x, "x").shaped(y, halved(x), x, "y").int32(idx, halved(x), "idx");
  Bf16Widening bf(*impl_, "maxpool2_forward", {&x, &y, &idx});
  impl_->maxpool2_forward(bf.in(x), bf.out(y), bf.out(idx));
  bf.finish();
}
void Backend::maxpool2_backward(const Tensor& dy, const Tensor& idx, Tensor& dx) {
  const Contract c("maxpool2_backward", device());
  c.volume(dx, "dx").shaped(dy, halved(dx), dx, "dy").int32(idx, halved(dx), "idx");
  Bf16Widening bf(*impl_, "maxpool2_backward", {&dy, &idx, &dx});
  impl_->maxpool2_backward(bf.in(dy), bf.in(idx), bf.out(dx));
  bf.finish();
}
void Backend::upsample2_forward(const Tensor& x, Tensor& y) {
  Contract("upsample2_forward", device()).volume(x, "x").shaped(y, doubled(x), x, "y");
  Bf16Widening bf(*impl_, "upsample2_forward", {&x, &y});
  impl_->upsample2_forward(bf.in(x), bf.out(y));
  bf.finish();
}
void Backend::upsample2_backward(const Tensor& dy, Tensor& dx) {
  Contract("upsample2_backward", device()).volume(dx, "dx").shaped(dy, doubled(dx), dx, "dy");
  Bf16Widening bf(*impl_, "upsample2_backward", {&dy, &dx});
  impl_->upsample2_backward(bf.in(dy), bf.out(dx));
  bf.finish();
}
void Backend::crop_forward(const Tensor& x, Tensor& y, const int64_t offset[3]) {
  check_crop(Contract("crop_forward", device()), x, y, offset, "x", "y");
  Bf16Widening bf(*impl_, "crop_forward", {&x, &y});
  impl_->crop_forward(bf.in(x), bf.out(y), offset);
  bf.finish();
}
void Backend::crop_backward(const Tensor& dy, Tensor& dx, const int64_t offset[3]) {
  check_crop(Contract("crop_backward", device()), dx, dy, offset, "dx", "dy");
  Bf16Widening bf(*impl_, "crop_backward", {&dy, &dx});
  impl_->crop_backward(bf.in(dy), bf.out(dx), offset);
  bf.finish();
}
void Backend::copy_channels(const Tensor& src, Tensor& dst, int64_t c0, bool reverse) {
  const Contract c("copy_channels", device());
  c.tensor(src, "src").tensor(dst, "dst");
  bool match = src.dim() >= 2 && src.dim() == dst.dim() && src.dtype() == dst.dtype();
  for (int64_t d = 0; match && d < src.dim(); ++d) match = d == 1 || src.size(d) == dst.size(d);
  HDSSL_REQUIRE(c, match) << "src " << src.describe() << " and dst " << dst.describe() << " differ outside dim 1";
  HDSSL_REQUIRE(c, c0 >= 0 && c0 + src.size(1) <= dst.size(1))
      << "channels [" << c0 << ", " << c0 + src.size(1) << ") of " << dst.describe();
  impl_->copy_channels(src, dst, c0, reverse);
}

// ---- batch normalization ----
void Backend::batchnorm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& y,
                                      Tensor& save_mean, Tensor& save_invstd, Tensor& running_mean,
                                      Tensor& running_var, const BatchNormArgs& a) {
  const Contract c("batchnorm_forward_train", device());
  c.dims(x, 2, "x", /*at_least=*/true).same(x, y, "y");
  check_channel_vectors(c, x, {{&gamma, "gamma"}, {&beta, "beta"}, {&save_mean, "save_mean"},
                               {&save_invstd, "save_invstd"}, {&running_mean, "running_mean"},
                               {&running_var, "running_var"}});
  HDSSL_REQUIRE(c, channel_view(x).count() > 1) << "expected more than 1 value per channel when training, got "
                                          << x.describe();
  Bf16Widening bf(*impl_, "batchnorm_forward_train", {&x});  // the [C] vectors are float32 then
  impl_->batchnorm_forward_train(bf.in(x), gamma, beta, bf.out(y), save_mean, save_invstd, running_mean,
                                 running_var, a);
  bf.finish();
}
void Backend::batchnorm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                     const Tensor& running_mean, const Tensor& running_var, Tensor& y,
                                     const BatchNormArgs& a) {
  const Contract c("batchnorm_forward_eval", device());
  c.dims(x, 2, "x", /*at_least=*/true).same(x, y, "y");
  check_channel_vectors(c, x, {{&gamma, "gamma"}, {&beta, "beta"}, {&running_mean, "running_mean"},
                               {&running_var, "running_var"}});
  Bf16Widening bf(*impl_, "batchnorm_forward_eval", {&x});
  impl_->batchnorm_forward_eval(bf.in(x), gamma, beta, running_mean, running_var, bf.out(y), a);
  bf.finish();
}
void Backend::batchnorm_backward(const Tensor& x, const Tensor& dy, const Tensor& gamma, const Tensor& save_mean,
                                 const Tensor& save_invstd, Tensor& dx, Tensor& dgamma, Tensor& dbeta) {
  const Contract c("batchnorm_backward", device());
  c.dims(x, 2, "x", /*at_least=*/true).same(x, dy, "dy").same(x, dx, "dx");
  check_channel_vectors(c, x, {{&gamma, "gamma"}, {&save_mean, "save_mean"}, {&save_invstd, "save_invstd"},
                               {&dgamma, "dgamma"}, {&dbeta, "dbeta"}});
  Bf16Widening bf(*impl_, "batchnorm_backward", {&x});
  impl_->batchnorm_backward(bf.in(x), bf.in(dy), gamma, save_mean, save_invstd, bf.out(dx), dgamma, dbeta);
  bf.finish();
}

// ---- fused batch normalization + ReLU (+ residual) ----
void Backend::batchnorm_relu_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& r,
                                           Tensor& y, Tensor& save_mean, Tensor& save_invstd, Tensor& running_mean,
                                           Tensor& running_var, const BatchNormArgs& a) {
  const Contract c("batchnorm_relu_forward_train", device());
  c.dims(x, 2, "x", /*at_least=*/true).same(x, y, "y");
  check_optional_residual(c, x, r, "r");
  check_channel_vectors(c, x, {{&gamma, "gamma"}, {&beta, "beta"}, {&save_mean, "save_mean"},
                               {&save_invstd, "save_invstd"}, {&running_mean, "running_mean"},
                               {&running_var, "running_var"}});
  HDSSL_REQUIRE(c, channel_view(x).count() > 1) << "expected more than 1 value per channel when training, got "
                                                << x.describe();
  Bf16Widening bf(*impl_, "batchnorm_relu_forward_train", {&x});  // the [C] vectors are float32 then
  impl_->batchnorm_relu_forward_train(bf.in(x), gamma, beta, bf.in(r), bf.out(y), save_mean, save_invstd,
                                      running_mean, running_var, a);
  bf.finish();
}
void Backend::batchnorm_relu_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& r,
                                          const Tensor& running_mean, const Tensor& running_var, Tensor& y,
                                          const BatchNormArgs& a) {
  const Contract c("batchnorm_relu_forward_eval", device());
  c.dims(x, 2, "x", /*at_least=*/true).same(x, y, "y");
  check_optional_residual(c, x, r, "r");
  check_channel_vectors(c, x, {{&gamma, "gamma"}, {&beta, "beta"}, {&running_mean, "running_mean"},
                               {&running_var, "running_var"}});
  Bf16Widening bf(*impl_, "batchnorm_relu_forward_eval", {&x});
  impl_->batchnorm_relu_forward_eval(bf.in(x), gamma, beta, bf.in(r), running_mean, running_var, bf.out(y), a);
  bf.finish();
}
void Backend::batchnorm_relu_backward(const Tensor& x, const Tensor& y, const Tensor& dy, const Tensor& gamma,
                                      const Tensor& save_mean, const Tensor& save_invstd, Tensor& dx, Tensor& dgamma,
                                      Tensor& dbeta, Tensor& dr) {
  const Contract c("batchnorm_relu_backward", device());
  c.dims(x, 2, "x", /*at_least=*/true).same(x, y, "y").same(x, dy, "dy").same(x, dx, "dx");
  check_optional_residual(c, x, dr, "dr");
  check_channel_vectors(c, x, {{&gamma, "gamma"}, {&save_mean, "save_mean"}, {&save_invstd, "save_invstd"},
                               {&dgamma, "dgamma"}, {&dbeta, "dbeta"}});
  Bf16Widening bf(*impl_, "batchnorm_relu_backward", {&x});
  impl_->batchnorm_relu_backward(bf.in(x), bf.in(y), bf.in(dy), gamma, save_mean, save_invstd, bf.out(dx), dgamma,
                                 dbeta, bf.out(dr));
  bf.finish();
}

// ---- dense linear algebra ----
void Backend::matmul(const Tensor& a, const Tensor& b, Tensor& out, bool trans_a, bool trans_b, double alpha,
                     double beta) {
  const Contract c("matmul", device());
  c.dims(a, 2, "a").dims(b, 2, "b").dims(out, 2, "out");
  HDSSL_REQUIRE(c, a.dtype() == b.dtype() && a.dtype() == out.dtype())
      << "dtypes differ: " << a.describe() << ", " << b.describe() << " -> " << out.describe();
  const int64_t M = trans_a ? a.size(1) : a.size(0), K = trans_a ? a.size(0) : a.size(1);
  const int64_t Kb = trans_b ? b.size(1) : b.size(0), N = trans_b ? b.size(0) : b.size(1);
  HDSSL_REQUIRE(c, K == Kb && out.size(0) == M && out.size(1) == N)
      << "op(a) " << M << "x" << K << " @ op(b) " << Kb << "x" << N << " -> " << out.describe();
  Bf16Widening bf(*impl_, "matmul", {&a, &b, &out});
  impl_->matmul(bf.in(a), bf.in(b), bf.inout(out), trans_a, trans_b, alpha, beta);
  bf.finish();
}
void Backend::add_row_vector(const Tensor& x, const Tensor& v, Tensor& out) {
  const Contract c("add_row_vector", device());
  c.dims(x, 2, "x").vec(v, x.size(1), x, "v").same(x, out, "out");
  Bf16Widening bf(*impl_, "add_row_vector", {&x, &v, &out});
  impl_->add_row_vector(bf.in(x), bf.in(v), bf.out(out));
  bf.finish();
}

// ---- voxel gather ----
void Backend::gather_voxels(const Tensor& feat, const Tensor& coords, int level, Tensor& out) {
  check_gather(Contract("gather_voxels", device()), feat, coords, level, out, "feat", "out");
  Bf16Widening bf(*impl_, "gather_voxels", {&feat, &coords, &out});
  impl_->gather_voxels(bf.in(feat), bf.in(coords), level, bf.out(out));
  bf.finish();
}
void Backend::gather_voxels_backward(const Tensor& dout, const Tensor& coords, int level, Tensor& dfeat) {
  check_gather(Contract("gather_voxels_backward", device()), dfeat, coords, level, dout, "dfeat", "dout");
  Bf16Widening bf(*impl_, "gather_voxels_backward", {&dout, &coords, &dfeat});
  impl_->gather_voxels_backward(bf.in(dout), bf.in(coords), level, bf.out(dfeat));
  bf.finish();
}

// ---- row-wise ----
void Backend::l2norm_forward(const Tensor& x, Tensor& y, Tensor& norms, double eps) {
  const Contract c("l2norm_forward", device());
  check_rows(c, x, norms, "x", "norms");
  c.same(x, y, "y");
  Bf16Widening bf(*impl_, "l2norm_forward", {&x, &y, &norms});
  impl_->l2norm_forward(bf.in(x), bf.out(y), bf.out(norms), eps);
  bf.finish();
}
void Backend::l2norm_backward(const Tensor& dy, const Tensor& y, const Tensor& norms, Tensor& dx) {
  const Contract c("l2norm_backward", device());
  check_rows(c, y, norms, "y", "norms");
  c.same(y, dy, "dy").same(y, dx, "dx");
  Bf16Widening bf(*impl_, "l2norm_backward", {&dy, &y, &norms, &dx});
  impl_->l2norm_backward(bf.in(dy), bf.in(y), bf.in(norms), bf.out(dx));
  bf.finish();
}
void Backend::logsumexp_rows(const Tensor& x, Tensor& out) {
  check_rows(Contract("logsumexp_rows", device()), x, out, "x", "out");
  Bf16Widening bf(*impl_, "logsumexp_rows", {&x, &out});
  impl_->logsumexp_rows(bf.in(x), bf.out(out));
  bf.finish();
}
void Backend::logsumexp_rows_backward(const Tensor& x, const Tensor& out, const Tensor& dout, Tensor& dx) {
  const Contract c("logsumexp_rows_backward", device());
  check_rows(c, x, out, "x", "out");
  c.same(out, dout, "dout").same(x, dx, "dx");
  Bf16Widening bf(*impl_, "logsumexp_rows_backward", {&x, &out, &dout, &dx});
  impl_->logsumexp_rows_backward(bf.in(x), bf.in(out), bf.in(dout), bf.out(dx));
  bf.finish();
}

// ---- losses ----
void Backend::infonce_forward(const Tensor& za, const Tensor& zb, double tau, Tensor& loss, Tensor& lse_a,
                              Tensor& lse_b) {
  const Contract c("infonce_forward", device());
  check_infonce(c, za, zb, tau, lse_a, lse_b);
  c.scalar(loss, za, "loss");
  Bf16Widening bf(*impl_, "infonce_forward", {&za, &zb, &loss, &lse_a, &lse_b});
  impl_->infonce_forward(bf.in(za), bf.in(zb), tau, bf.out(loss), bf.out(lse_a), bf.out(lse_b));
  bf.finish();
}
void Backend::infonce_backward(const Tensor& za, const Tensor& zb, double tau, const Tensor& lse_a,
                               const Tensor& lse_b, const Tensor& dloss, Tensor& dza, Tensor& dzb) {
  const Contract c("infonce_backward", device());
  check_infonce(c, za, zb, tau, lse_a, lse_b);
  c.scalar(dloss, za, "dloss").same(za, dza, "dza").same(zb, dzb, "dzb");
  Bf16Widening bf(*impl_, "infonce_backward", {&za, &zb, &lse_a, &lse_b, &dloss, &dza, &dzb});
  impl_->infonce_backward(bf.in(za), bf.in(zb), tau, bf.in(lse_a), bf.in(lse_b), bf.in(dloss), bf.out(dza),
                          bf.out(dzb));
  bf.finish();
}
void Backend::mse_forward(const Tensor& x, const Tensor& target, Tensor& loss) {
  Contract("mse_forward", device()).floating(x, "x").same(x, target, "target").scalar(loss, x, "loss");
  Bf16Widening bf(*impl_, "mse_forward", {&x, &target, &loss});
  impl_->mse_forward(bf.in(x), bf.in(target), bf.out(loss));
  bf.finish();
}
void Backend::mse_backward(const Tensor& x, const Tensor& target, const Tensor& dloss, Tensor& dx) {
  Contract("mse_backward", device())
      .floating(x, "x").same(x, target, "target").scalar(dloss, x, "dloss").same(x, dx, "dx");
  Bf16Widening bf(*impl_, "mse_backward", {&x, &target, &dloss, &dx});
  impl_->mse_backward(bf.in(x), bf.in(target), bf.in(dloss), bf.out(dx));
  bf.finish();
}
void Backend::bce_logits_forward(const Tensor& x, const Tensor& target, Tensor& loss) {
  Contract("bce_logits_forward", device()).floating(x, "x").same(x, target, "target").scalar(loss, x, "loss");
  Bf16Widening bf(*impl_, "bce_logits_forward", {&x, &target, &loss});
  impl_->bce_logits_forward(bf.in(x), bf.in(target), bf.out(loss));
  bf.finish();
}
void Backend::bce_logits_backward(const Tensor& x, const Tensor& target, const Tensor& dloss, Tensor& dx) {
  Contract("bce_logits_backward", device())
      .floating(x, "x").same(x, target, "target").scalar(dloss, x, "dloss").same(x, dx, "dx");
  Bf16Widening bf(*impl_, "bce_logits_backward", {&x, &target, &dloss, &dx});
  impl_->bce_logits_backward(bf.in(x), bf.in(target), bf.in(dloss), bf.out(dx));
  bf.finish();
}
void Backend::soft_dice_forward(const Tensor& p, const Tensor& g, Tensor& loss, Tensor& sums) {
  const Contract c("soft_dice_forward", device());
  check_dice(c, p, g, sums);
  c.scalar(loss, p, "loss");
  Bf16Widening bf(*impl_, "soft_dice_forward", {&p, &g, &loss, &sums});
  impl_->soft_dice_forward(bf.in(p), bf.in(g), bf.out(loss), bf.out(sums));
  bf.finish();
}
void Backend::soft_dice_backward(const Tensor& p, const Tensor& g, const Tensor& sums, const Tensor& dloss,
                                 Tensor& dp) {
  const Contract c("soft_dice_backward", device());
  check_dice(c, p, g, sums);
  c.scalar(dloss, p, "dloss").same(p, dp, "dp");
  Bf16Widening bf(*impl_, "soft_dice_backward", {&p, &g, &sums, &dloss, &dp});
  impl_->soft_dice_backward(bf.in(p), bf.in(g), bf.in(sums), bf.in(dloss), bf.out(dp));
  bf.finish();
}

// ---- optimizer ----
void Backend::adam_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamArgs& a,
                        double grad_scale, const Tensor& scale, const Tensor& step_count) {
  const Contract c("adam_step", device());
  c.floating(param, "param").same(param, grad, "grad").same(param, m, "m").same(param, v, "v");
  if (scale.defined()) c.scalar(scale, param, "scale");
  if (step_count.defined()) {
    c.tensor(step_count, "step_count");
    HDSSL_REQUIRE(c, step_count.dtype() == DType::F64 && step_count.numel() == 1)
        << "step_count must be float64 [1], got " << step_count.describe();
  }
  HDSSL_REQUIRE(c, a.step >= 1) << "step is 1-based, got " << a.step;
  Bf16Widening bf(*impl_, "adam_step", {&param, &grad, &m, &v, &scale});
  impl_->adam_step(bf.inout(param), bf.in(grad), bf.inout(m), bf.inout(v), a, grad_scale, bf.in(scale),
                   step_count);
  bf.finish();
}
void Backend::clip_scale(const Tensor& sum_squares, double max_norm, double eps, Tensor& scale) {
  const Contract c("clip_scale", device());
  c.floating(sum_squares, "sum_squares").scalar(sum_squares, sum_squares, "sum_squares");
  c.scalar(scale, sum_squares, "scale");
  HDSSL_REQUIRE(c, max_norm > 0 && eps >= 0) << "max_norm > 0 and eps >= 0 expected, got " << max_norm << ", "
                                              << eps;
  Bf16Widening bf(*impl_, "clip_scale", {&sum_squares, &scale});
  impl_->clip_scale(bf.in(sum_squares), max_norm, eps, bf.out(scale));
  bf.finish();
}

}  // namespace hdssl
