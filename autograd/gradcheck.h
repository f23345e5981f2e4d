// Finite-difference gradient checking: compares the analytic gradient of a scalar function of several
// Variables against central differences, one input at a time (after flashlight's jacobianTestImpl).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "autograd/variable.h"

namespace hdssl {

struct GradCheckResult {
  double max_rel_error = 0;  // max over inputs and elements of |analytic - numeric| / max(1, |numeric|... see .cpp)
  std::string worst;         // where it was: "input 1 element 37: analytic .. numeric .."
};

// f maps the inputs to a scalar Variable. Inputs must be float64 leaves with requires_grad. The output is
// projected on a fixed random direction when it is not a scalar. eps is the finite-difference step.
GradCheckResult gradcheck(const std::function<Variable(const std::vector<Variable>&)>& f,
                          const std::vector<Variable>& inputs, double eps = 1e-6);

}  // namespace hdssl
