// Row-wise functions on [N,D]. l2_normalize saves its output and the per-row divisor (its backward is
// written in y, not x); logsumexp_rows saves input and output, the softmax being exp(x - out).
#include "autograd/autocast.h"
#include "autograd/functions.h"

namespace hdssl::ag {

Variable l2_normalize(const Variable& x_in, double eps) {
  const Variable x = autocast(OpClass::FullPrecision, {x_in})[0];
  HDSSL_CHECK(x.value().dim() == 2) << "l2_normalize: [N,D] expected, got " << x.value().describe();
  Tensor y = Tensor::empty_like(x.value());
  Tensor norms = Tensor::empty({x.size(0)}, x.dtype(), x.device());
  backend(x.device()).l2norm_forward(x.value(), y, norms, eps);
  return make_result("l2_normalize", y, {x}, [y, norms](const Tensor& g, const std::vector<bool>&,
                                                        std::vector<Tensor>& gin) {
    gin[0] = Tensor::empty_like(g);
    backend(g.device()).l2norm_backward(g, y, norms, gin[0]);
  });
}

Variable logsumexp_rows(const Variable& x_in) {
  const Variable x = autocast(OpClass::FullPrecision, {x_in})[0];
  HDSSL_CHECK(x.value().dim() == 2) << "logsumexp_rows: [N,M] expected, got " << x.value().describe();
  Tensor xv = x.value();
  Tensor out = Tensor::empty({x.size(0)}, x.dtype(), x.device());
  backend(x.device()).logsumexp_rows(xv, out);
  return make_result("logsumexp_rows", out, {x}, [xv, out](const Tensor& g, const std::vector<bool>&,
                                                           std::vector<Tensor>& gin) {
    gin[0] = Tensor::empty_like(xv);
    backend(g.device()).logsumexp_rows_backward(xv, out, g, gin[0]);  // dx = g * softmax(x)
  });
}

}  // namespace hdssl::ag
