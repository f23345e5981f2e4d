// Elementwise functions: forward, then the backward closure right under it. The binary ones promote mixed
// operands (autograd/autocast.h, OpClass::Follow); the unary ones keep their input's dtype.
#include "autograd/autocast.h"
#include "autograd/functions.h"

namespace hdssl::ag {
namespace {
Backend& be(const Variable& v) { return backend(v.device()); }
}  // namespace

Variable add(const Variable& a_in, const Variable& b_in) {
  const std::vector<Variable> in = autocast(OpClass::Follow, {a_in, b_in});
  const Variable &a = in[0], &b = in[1];
  Tensor y = Tensor::empty_like(a.value());
  be(a).axpby(1.0, a.value(), 1.0, b.value(), y);
  return make_result("add", y, {a, b}, [](const Tensor& g, const std::vector<bool>&, std::vector<Tensor>& gin) {
    gin[0] = g;  // gradients are never modified in place, so sharing is safe
    gin[1] = g;
  });
}

Variable sub(const Variable& a_in, const Variable& b_in) {
  const std::vector<Variable> in = autocast(OpClass::Follow, {a_in, b_in});
  const Variable &a = in[0], &b = in[1];
  Tensor y = Tensor::empty_like(a.value());
  be(a).axpby(1.0, a.value(), -1.0, b.value(), y);
  return make_result("sub", y, {a, b}, [](const Tensor& g, const std::vector<bool>& needs, std::vector<Tensor>& gin) {
    gin[0] = g;
    if (needs[1]) {
      gin[1] = Tensor::empty_like(g);
      backend(g.device()).axpby(-1.0, g, 0.0, g, gin[1]);
    }
  });
}

Variable mul(const Variable& a_in, const Variable& b_in) {
  const std::vector<Variable> in = autocast(OpClass::Follow, {a_in, b_in});
  const Variable &a = in[0], &b = in[1];
  Tensor y = Tensor::empty_like(a.value());
  be(a).mul(a.value(), b.value(), y);
  Tensor av = a.value(), bv = b.value();
  return make_result("mul", y, {a, b}, [av, bv](const Tensor& g, const std::vector<bool>& needs, std::vector<Tensor>& gin) {
    if (needs[0]) { gin[0] = Tensor::empty_like(g); backend(g.device()).mul(g, bv, gin[0]); }
    if (needs[1]) { gin[1] = Tensor::empty_like(g); backend(g.device()).mul(g, av, gin[1]); }
  });
}

Variable scale(const Variable& x, double alpha) {
  Tensor y = Tensor::empty_like(x.value());
  be(x).axpby(alpha, x.value(), 0.0, x.value(), y);
  return make_result("scale", y, {x}, [alpha](const Tensor& g, const std::vector<bool>&, std::vector<Tensor>& gin) {
    gin[0] = Tensor::empty_like(g);
    backend(g.device()).axpby(alpha, g, 0.0, g, gin[0]);
  });
}

Variable relu(const Variable& x) {
  Tensor y = Tensor::empty_like(x.value());
  be(x).relu_forward(x.value(), y);
  return make_result("relu", y, {x}, [y](const Tensor& g, const std::vector<bool>&, std::vector<Tensor>& gin) {
    gin[0] = Tensor::empty_like(g);
    backend(g.device()).relu_backward(y, g, gin[0]);
  });
}

Variable sigmoid(const Variable& x) {
  Tensor y = Tensor::empty_like(x.value());
  be(x).sigmoid_forward(x.value(), y);
  return make_result("sigmoid", y, {x}, [y](const Tensor& g, const std::vector<bool>&, std::vector<Tensor>& gin) {
    gin[0] = Tensor::empty_like(g);
    backend(g.device()).sigmoid_backward(y, g, gin[0]);
  });
}

}  // namespace hdssl::ag
