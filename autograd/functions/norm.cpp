// Batch normalization: forward, then the backward closure right under it.
//
// Training mode normalizes with batch statistics (saved mean and invstd) and updates the running
// statistics in place; its gradient is the backend's batchnorm_backward. Eval mode is the affine map
//   y = x * s + (beta - running_mean * s),  s = gamma / sqrt(running_var + eps)   (per channel),
// so dx = dy * s, dgamma = sum(dy * xhat) with xhat = (x - running_mean) / sqrt(running_var + eps), and
// dbeta = sum(dy). Both dx and xhat are themselves eval-mode batch norms (with beta = 0 and, for dx, mean
// 0), so the eval gradient reuses batchnorm_forward_eval and runs on any backend.
//
// Mixed precision (autograd/autocast.h, OpClass::Normalization): x stays in its dtype (bf16 in, bf16 out),
// gamma, beta and the statistics are in x's compute dtype (float32 for bf16 x), and so are dgamma, dbeta:
// the sums behind them read x and dy widened to float32, never a bf16-rounded product.
//
// batchnorm_relu is relu(batchnorm(x) [+ residual]) in one primitive each way (the backend's
// batchnorm_relu_*), with the bits of the composition. It saves what the two unfused ops would keep
// alive (x for the statistics, y for the ReLU mask), and nothing in between. The eval-mode gradient
// masks dy with relu_backward and then takes the eval gradient above. It runs the unfused composition
// instead (same numbers, the autocast rules of each part) in two cases: under --sync-bn (a
// BatchNormStatsReducer installed) in training mode, whose statistics are reduced on the host between the
// passes, which one kernel cannot span; and when the residual's dtype differs from x's (mixed precision:
// the add then promotes to the wider dtype, as ag::add does).
#include "autograd/autocast.h"
#include "autograd/batchnorm_sync.h"
#include "autograd/functions.h"

namespace hdssl::ag {
namespace {
// The gradients of the eval-mode batch norm (the affine map above) for output gradient g.
void eval_backward(const Tensor& g, const Tensor& xv, const Tensor& gv, const Tensor& rm, const Tensor& rv,
                   const BatchNormArgs& args, const std::vector<bool>& needs, std::vector<Tensor>& gin) {
  Backend& b = backend(g.device());
  const Tensor zeros = Tensor::zeros_like(gv);
  if (needs[0]) {  // dy * gamma / sqrt(rv + eps)
    gin[0] = Tensor::empty_like(g);
    b.batchnorm_forward_eval(g, gv, zeros, zeros, rv, gin[0], args);
  }
  const Tensor gw = g.to(gv.dtype());  // the sums in gamma's dtype (g itself unless bf16)
  if (needs[1]) {  // sum(dy * xhat)
    const Tensor xw = xv.to(gv.dtype());
    Tensor xhat = Tensor::empty_like(xw);
    b.batchnorm_forward_eval(xw, Tensor::full(gv.shape(), 1.0, gv.dtype(), gv.device()), zeros, rm, rv, xhat, args);
    b.mul(gw, xhat, xhat);
    gin[1] = Tensor::empty_like(gv);
    b.channel_sum(xhat, gin[1]);
  }
  if (needs[2]) {
    gin[2] = Tensor::empty_like(gv);
    b.channel_sum(gw, gin[2]);
  }
}
}  // namespace

Variable batchnorm(const Variable& x, const Variable& gamma_in, const Variable& beta_in, Tensor& running_mean,
                   Tensor& running_var, bool training, const BatchNormArgs& args) {
  const std::vector<Variable> in = autocast(OpClass::Normalization, {x, gamma_in, beta_in});
  const Variable &gamma = in[1], &beta = in[2];
  const Tensor xv = x.value(), gv = gamma.value();
  HDSSL_CHECK(xv.dim() >= 2) << "batchnorm: expected [N,C,...], got " << xv.describe();
  if (training && batchnorm_stats_reducer()) {  // --sync-bn: global batch statistics (autograd/batchnorm_sync.h)
    if (xv.dtype() == DType::BF16)  // its host-side sums work in x's dtype: widen, normalize, round
      return cast(batchnorm(cast(x, DType::F32), gamma, beta, running_mean, running_var, training, args),
                     DType::BF16);
    return batchnorm_synced(x, gamma, beta, running_mean, running_var, args, *batchnorm_stats_reducer());
  }
  Backend& be = backend(xv.device());
  Tensor y = Tensor::empty_like(xv);
  if (training) {
    Tensor mean = Tensor::empty(gv.shape(), compute_dtype(xv.dtype()), xv.device());
    Tensor invstd = Tensor::empty(gv.shape(), compute_dtype(xv.dtype()), xv.device());
    be.batchnorm_forward_train(xv, gv, beta.value(), y, mean, invstd, running_mean, running_var, args);
    return make_result("batchnorm", y, {x, gamma, beta},
                       [xv, gv, mean, invstd](const Tensor& g, const std::vector<bool>& needs, std::vector<Tensor>& gin) {
                         Tensor dx = Tensor::empty_like(xv), dgamma = Tensor::empty_like(gv),
                                dbeta = Tensor::empty_like(gv);
                         backend(g.device()).batchnorm_backward(xv, g, gv, mean, invstd, dx, dgamma, dbeta);
                         if (needs[0]) gin[0] = dx;
                         if (needs[1]) gin[1] = dgamma;
                         if (needs[2]) gin[2] = dbeta;
                       });
  }
  be.batchnorm_forward_eval(xv, gv, beta.value(), running_mean, running_var, y, args);
  // The running statistics are copied: a later training step may update them before this backward runs.
  const Tensor rm = running_mean.clone(), rv = running_var.clone();
  return make_result("batchnorm_eval", y, {x, gamma, beta},
                     [xv, gv, rm, rv, args](const Tensor& g, const std::vector<bool>& needs, std::vector<Tensor>& gin) {
                       eval_backward(g, xv, gv, rm, rv, args, needs, gin);
                     });
}

Variable batchnorm_relu(const Variable& x, const Variable& gamma_in, const Variable& beta_in, Tensor& running_mean,
                        Tensor& running_var, bool training, const Variable& residual, const BatchNormArgs& args) {
  const Tensor xv = x.value();
  HDSSL_CHECK(xv.dim() >= 2) << "batchnorm_relu: expected [N,C,...], got " << xv.describe();
  if ((training && batchnorm_stats_reducer()) || (residual.defined() && residual.dtype() != xv.dtype())) {
    const Variable h = batchnorm(x, gamma_in, beta_in, running_mean, running_var, training, args);
    return relu(residual.defined() ? add(h, residual) : h);  // the unfused composition (see the note on top)
  }
  const std::vector<Variable> in = autocast(OpClass::Normalization, {x, gamma_in, beta_in});
  const Variable &gamma = in[1], &beta = in[2];
  const Tensor gv = gamma.value();
  const Tensor rv_in = residual.defined() ? residual.value() : Tensor();
  std::vector<Variable> inputs{x, gamma, beta};
  if (residual.defined()) inputs.push_back(residual);
  Backend& be = backend(xv.device());
  Tensor y = Tensor::empty_like(xv);
  if (training) {
    Tensor mean = Tensor::empty(gv.shape(), compute_dtype(xv.dtype()), xv.device());
    Tensor invstd = Tensor::empty(gv.shape(), compute_dtype(xv.dtype()), xv.device());
    be.batchnorm_relu_forward_train(xv, gv, beta.value(), rv_in, y, mean, invstd, running_mean, running_var, args);
    return make_result("batchnorm_relu", y, std::move(inputs),
                       [xv, y, gv, mean, invstd](const Tensor& g, const std::vector<bool>& needs,
                                                 std::vector<Tensor>& gin) {
                         Tensor dx = Tensor::empty_like(xv), dgamma = Tensor::empty_like(gv),
                                dbeta = Tensor::empty_like(gv);
                         Tensor dr = needs.size() > 3 && needs[3] ? Tensor::empty_like(xv) : Tensor();
                         backend(g.device()).batchnorm_relu_backward(xv, y, g, gv, mean, invstd, dx, dgamma, dbeta,
                                                                     dr);
                         if (needs[0]) gin[0] = dx;
                         if (needs[1]) gin[1] = dgamma;
                         if (needs[2]) gin[2] = dbeta;
                         if (dr.defined()) gin[3] = dr;
                       });
  }
  be.batchnorm_relu_forward_eval(xv, gv, beta.value(), rv_in, running_mean, running_var, y, args);
  const Tensor rm = running_mean.clone(), rv = running_var.clone();
  return make_result("batchnorm_relu_eval", y, std::move(inputs),
                     [xv, y, gv, rm, rv, args](const Tensor& g, const std::vector<bool>& needs,
                                               std::vector<Tensor>& gin) {
                       Tensor masked = Tensor::empty_like(g);  // the gradient at bn(x) + residual
                       backend(g.device()).relu_backward(y, g, masked);
                       eval_backward(masked, xv, gv, rm, rv, args, needs, gin);
                       if (needs.size() > 3 && needs[3]) gin[3] = masked;
                     });
}

}  // namespace hdssl::ag
