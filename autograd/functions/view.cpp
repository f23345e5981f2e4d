// Views: a new shape over the same storage. The gradient is the incoming gradient viewed back.
#include "autograd/functions.h"

namespace hdssl::ag {

Variable reshape(const Variable& x, const Shape& shape) {
  Shape original = x.shape();
  return make_result("reshape", x.value().reshape(shape), {x},
                     [original](const Tensor& g, const std::vector<bool>&, std::vector<Tensor>& gin) {
                       gin[0] = g.reshape(original);
                     });
}

}  // namespace hdssl::ag
