// Dense layers: matmul with transpose flags and linear = x w^T + b.
//
// The gradients of C = op(A) op(B) are again GEMMs with transpose flags, so no transposed copy is ever
// made: dop(A) = G op(B)^T and dop(B) = op(A)^T G, and when A entered transposed, dA = (dop(A))^T is the
// same product with its operands swapped and both flags flipped (the four cases are spelled out below).
// The bias gradient of linear is the column sum of G: channel_sum views [N,out] as [N, out, 1].
#include "autograd/autocast.h"
#include "autograd/functions.h"

namespace hdssl::ag {
namespace {
// out = op(a) @ op(b), allocated here.
Tensor mm(const Tensor& a, bool ta, const Tensor& b, bool tb) {
  const int64_t M = ta ? a.size(1) : a.size(0), N = tb ? b.size(0) : b.size(1);
  Tensor out = Tensor::empty({M, N}, a.dtype(), a.device());
  backend(a.device()).matmul(a, b, out, ta, tb, 1.0, 0.0);
  return out;
}
}  // namespace

Variable matmul(const Variable& a_in, const Variable& b_in, bool trans_a, bool trans_b) {
  const std::vector<Variable> in = autocast(OpClass::LowPrecision, {a_in, b_in});
  const Variable &a = in[0], &b = in[1];
  HDSSL_CHECK(a.value().dim() == 2 && b.value().dim() == 2)
      << "matmul: 2D operands expected, got " << a.value().describe() << " and " << b.value().describe();
  Tensor av = a.value(), bv = b.value();
  Tensor y = mm(av, trans_a, bv, trans_b);
  return make_result("matmul", y, {a, b},
                     [av, bv, trans_a, trans_b](const Tensor& g, const std::vector<bool>& needs, std::vector<Tensor>& gin) {
    if (needs[0]) {
      if (!trans_a) gin[0] = mm(g, false, bv, !trans_b);  // dA = G op(B)^T
      else gin[0] = mm(bv, trans_b, g, true);             // dA = (G op(B)^T)^T = op(B) G^T
    }
    if (needs[1]) {
      if (!trans_b) gin[1] = mm(av, !trans_a, g, false);  // dB = op(A)^T G
      else gin[1] = mm(g, true, av, trans_a);             // dB = (op(A)^T G)^T = G^T op(A)
    }
  });
}

Variable linear(const Variable& x_in, const Variable& w_in, const Variable& b_in) {
  const std::vector<Variable> in = autocast(OpClass::LowPrecision, {x_in, w_in, b_in});
  const Variable &x = in[0], &w = in[1], &b = in[2];
  HDSSL_CHECK(x.value().dim() == 2 && w.value().dim() == 2 && x.size(1) == w.size(1))
      << "linear: x [N,in], w [out,in] expected, got " << x.value().describe() << ", " << w.value().describe();
  HDSSL_CHECK(!b.defined() || b.shape() == Shape{w.size(0)})
      << "linear: bias must be [" << w.size(0) << "], got " << b.value().describe();
  Tensor xv = x.value(), wv = w.value();
  Tensor y = mm(xv, false, wv, true);
  if (b.defined()) backend(y.device()).add_row_vector(y, b.value(), y);
  return make_result("linear", y, {x, w, b}, [xv, wv](const Tensor& g, const std::vector<bool>& needs,
                                                       std::vector<Tensor>& gin) {
    if (needs[0]) gin[0] = mm(g, false, wv, false);  // dx = G w
    if (needs[1]) gin[1] = mm(g, true, xv, false);   // dw = G^T x
    if (needs[2]) {                                  // db = column sums of G
      gin[2] = Tensor::empty({g.size(1)}, g.dtype(), g.device());
      backend(g.device()).channel_sum(g, gin[2]);
    }
  });
}

}  // namespace hdssl::ag
