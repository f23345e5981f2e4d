// Channel concatenation (dim 1) of 5D volumes or 2D rows: each input is copied into its channel range;
// the backward closure copies each range of the gradient back out for the inputs that need one.
#include "autograd/autocast.h"
#include "autograd/functions.h"

namespace hdssl::ag {

Variable concat_channels(const std::vector<Variable>& xs_in) {
  HDSSL_CHECK(!xs_in.empty()) << "concat_channels of no tensors";
  const std::vector<Variable> xs = autocast(OpClass::Follow, xs_in);  // mixed dtypes promote
  const Tensor& first = xs[0].value();
  Shape shape = first.shape();
  HDSSL_CHECK(shape.size() >= 2) << "concat_channels: expected at least 2 dims, got " << first.describe();
  shape[1] = 0;
  for (const Variable& v : xs) {
    const Tensor& t = v.value();
    bool ok = t.dim() == first.dim() && t.dtype() == first.dtype() && t.device() == first.device();
    for (int64_t d = 0; ok && d < t.dim(); ++d) ok = d == 1 || t.size(d) == first.size(d);
    HDSSL_CHECK(ok) << "concat_channels: " << t.describe() << " does not match " << first.describe();
    shape[1] += t.size(1);
  }
  Tensor y = Tensor::empty(shape, first.dtype(), first.device());
  Backend& be = backend(first.device());
  std::vector<int64_t> c0(xs.size());
  std::vector<Shape> shapes(xs.size());
  for (size_t i = 0, c = 0; i < xs.size(); c += size_t(xs[i].size(1)), ++i) {
    c0[i] = int64_t(c);
    shapes[i] = xs[i].shape();
    be.copy_channels(xs[i].value(), y, c0[i], false);
  }
  return make_result("concat_channels", y, xs,
                     [c0, shapes](const Tensor& g, const std::vector<bool>& needs, std::vector<Tensor>& gin) {
                       Tensor whole = g;  // copy_channels reads it in reverse mode (a shared handle)
                       for (size_t i = 0; i < needs.size(); ++i) {
                         if (!needs[i]) continue;
                         gin[i] = Tensor::empty(shapes[i], g.dtype(), g.device());
                         backend(g.device()).copy_channels(gin[i], whole, c0[i], true);
                       }
                     });
}

}  // namespace hdssl::ag
