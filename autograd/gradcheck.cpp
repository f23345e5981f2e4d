// Central differences on each element of each input, against one backward pass.
//
// Error measure, per input: max_i |analytic_i - numeric_i| / max(max_i |numeric_i|, 1e-8), i.e. the error
// relative to the scale of that input's gradient. A per-element relative error would be dominated by
// elements whose true gradient is zero (ReLU, max-pool) where the difference is pure rounding noise.
#include "autograd/gradcheck.h"

#include <cmath>
#include <sstream>

#include "autograd/functions.h"
#include "engine/random.h"

namespace hdssl {

GradCheckResult gradcheck(const std::function<Variable(const std::vector<Variable>&)>& f,
                          const std::vector<Variable>& inputs, double eps) {
  for (const Variable& v : inputs) {
    HDSSL_CHECK(v.dtype() == DType::F64 && v.device().is_cpu() && v.requires_grad() && v.is_leaf())
        << "gradcheck needs float64 CPU leaves with requires_grad: " << v.value().describe();
  }
  // A fixed random projection turns any output into a scalar whose gradient touches every output element.
  Shape out_shape;
  {
    NoGradGuard ng;
    out_shape = f(inputs).shape();
  }
  Rng rng(12345);
  std::vector<double> r(size_t(numel(out_shape)));
  for (double& x : r) x = rng.uniform(-1.0, 1.0);
  const Variable proj(Tensor::from_vector(r, out_shape));
  auto scalar = [&](const std::vector<Variable>& in) { return ag::sum(ag::mul(f(in), proj)); };

  for (const Variable& v : inputs) const_cast<Variable&>(v).zero_grad();
  scalar(inputs).backward();

  GradCheckResult result;
  NoGradGuard ng;
  for (size_t k = 0; k < inputs.size(); ++k) {
    Variable in = inputs[k];
    const Tensor& g = in.grad();
    HDSSL_CHECK(g.defined()) << "input " << k << " received no gradient";
    std::vector<double> analytic = g.to_vector<double>();
    double* x = in.value().data<double>();
    std::vector<double> numeric(analytic.size());
    double scale = 0;
    for (size_t i = 0; i < analytic.size(); ++i) {
      const double orig = x[i];
      x[i] = orig + eps;
      const double fp = scalar(inputs).value().item();
      x[i] = orig - eps;
      const double fm = scalar(inputs).value().item();
      x[i] = orig;
      numeric[i] = (fp - fm) / (2 * eps);
      scale = std::max(scale, std::fabs(numeric[i]));
    }
    scale = std::max(scale, 1e-8);
    for (size_t i = 0; i < analytic.size(); ++i) {
      const double err = std::fabs(analytic[i] - numeric[i]) / scale;
      if (err > result.max_rel_error || result.worst.empty()) {
        if (err >= result.max_rel_error) {
          result.max_rel_error = err;
          std::ostringstream os;
          os << "input " << k << " (" << in.value().describe() << ") element " << i << ": analytic "
             << analytic[i] << " numeric " << numeric[i] << " (gradient scale " << scale << ")";
          result.worst = os.str();
        }
      }
    }
  }
  return result;
}

}  // namespace hdssl
