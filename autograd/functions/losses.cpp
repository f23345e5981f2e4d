// Losses: each returns a mean as a [1] Variable; targets are constant Tensors (no gradient).
//
// InfoNCE saves only the two [N] log-sum-exp vectors of its forward; the backward recomputes the
// similarity blocks from za, zb (see engine/cpu/losses.cpp), so no N x N matrix outlives a kernel.
// soft_dice saves the three sums per (n,k); the others save nothing beyond their inputs.
#include "autograd/autocast.h"
#include "autograd/functions.h"

namespace hdssl::ag {
namespace {
Tensor scalar_like(const Tensor& t) { return Tensor::empty({1}, t.dtype(), t.device()); }

void check_target(const Variable& x, const Tensor& target, const char* op) {
  HDSSL_CHECK(target.shape() == x.shape() && target.dtype() == x.dtype() && target.device() == x.device())
      << op << ": target " << target.describe() << " for input " << x.value().describe();
}
}  // namespace

Variable infonce(const Variable& za_in, const Variable& zb_in, double tau) {
  const std::vector<Variable> in = autocast(OpClass::FullPrecision, {za_in, zb_in});
  const Variable &za = in[0], &zb = in[1];
  Tensor a = za.value(), b = zb.value();
  Tensor loss = scalar_like(a);
  Tensor lse_a = Tensor::empty({a.size(0)}, a.dtype(), a.device()), lse_b = Tensor::empty_like(lse_a);
  backend(a.device()).infonce_forward(a, b, tau, loss, lse_a, lse_b);
  return make_result("infonce", loss, {za, zb}, [a, b, tau, lse_a, lse_b](const Tensor& g, const std::vector<bool>&,
                                                                          std::vector<Tensor>& gin) {
    // One kernel yields both gradients (they share every similarity block), whatever `needs` says.
    gin[0] = Tensor::empty_like(a);
    gin[1] = Tensor::empty_like(b);
    backend(g.device()).infonce_backward(a, b, tau, lse_a, lse_b, g, gin[0], gin[1]);
  });
}

Variable mse(const Variable& x_in, const Tensor& target) {
  const Variable x = autocast(OpClass::FullPrecision, {x_in})[0];
  check_target(x, target, "mse");
  Tensor xv = x.value();
  Tensor loss = scalar_like(xv);
  backend(xv.device()).mse_forward(xv, target, loss);
  return make_result("mse", loss, {x}, [xv, target](const Tensor& g, const std::vector<bool>&, std::vector<Tensor>& gin) {
    gin[0] = Tensor::empty_like(xv);
    backend(g.device()).mse_backward(xv, target, g, gin[0]);
  });
}

Variable bce_with_logits(const Variable& x_in, const Tensor& target) {
  const Variable x = autocast(OpClass::FullPrecision, {x_in})[0];
  check_target(x, target, "bce_with_logits");
  Tensor xv = x.value();
  Tensor loss = scalar_like(xv);
  backend(xv.device()).bce_logits_forward(xv, target, loss);
  return make_result("bce_with_logits", loss, {x}, [xv, target](const Tensor& g, const std::vector<bool>&,
                                                                std::vector<Tensor>& gin) {
    gin[0] = Tensor::empty_like(xv);
    backend(g.device()).bce_logits_backward(xv, target, g, gin[0]);
  });
}

Variable soft_dice(const Variable& p_in, const Tensor& target) {
  const Variable p = autocast(OpClass::FullPrecision, {p_in})[0];
  check_target(p, target, "soft_dice");
  HDSSL_CHECK(p.value().dim() >= 2) << "soft_dice: [N,K,...] expected, got " << p.value().describe();
  Tensor pv = p.value();
  Tensor loss = scalar_like(pv);
  Tensor sums = Tensor::empty({pv.size(0) * pv.size(1), 3}, pv.dtype(), pv.device());
  backend(pv.device()).soft_dice_forward(pv, target, loss, sums);
  return make_result("soft_dice", loss, {p}, [pv, target, sums](const Tensor& g, const std::vector<bool>&,
                                                                std::vector<Tensor>& gin) {
    gin[0] = Tensor::empty_like(pv);
    backend(g.device()).soft_dice_backward(pv, target, sums, g, gin[0]);
  });
}

}  // namespace hdssl::ag
