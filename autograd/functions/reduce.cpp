// Whole-tensor reductions. Their backward broadcasts the scalar gradient; it is read on the host, which
// is fine for a scalar at the end of a graph (one value per step).
#include "autograd/autocast.h"
#include "autograd/functions.h"

namespace hdssl::ag {

Variable sum(const Variable& x_in) {
  const Variable x = autocast(OpClass::FullPrecision, {x_in})[0];
  Tensor y = Tensor::empty({1}, x.dtype(), x.device());
  backend(x.device()).sum_all(x.value(), y);
  Shape shape = x.shape();
  return make_result("sum", y, {x}, [shape](const Tensor& g, const std::vector<bool>&, std::vector<Tensor>& gin) {
    gin[0] = Tensor::full(shape, g.item(), g.dtype(), g.device());
  });
}

Variable mean(const Variable& x) {
  HDSSL_CHECK(x.value().numel() > 0) << "mean of an empty tensor";
  return scale(sum(x), 1.0 / double(x.value().numel()));
}

}  // namespace hdssl::ag
