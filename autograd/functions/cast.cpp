// Dtype conversion: the forward converts (bf16 rounds to nearest even, engine/bf16.h), the backward
// converts the gradient back to the input's dtype. A cast to the dtype x already has is x itself.
#include "autograd/functions.h"

namespace hdssl::ag {

Variable cast(const Variable& x, DType dtype) {
  HDSSL_CHECK(is_floating(x.dtype()) && is_floating(dtype))
      << "cast: floating dtypes only, got " << x.value().describe() << " -> " << dtype_name(dtype);
  if (x.dtype() == dtype) return x;
  const DType from = x.dtype();
  return make_result("cast", x.value().to(dtype), {x}, [from](const Tensor& g, const std::vector<bool>&,
                                                             std::vector<Tensor>& gin) { gin[0] = g.to(from); });
}

}  // namespace hdssl::ag
