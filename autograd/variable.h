// Reverse-mode automatic differentiation over a dynamically recorded graph.
//
// A Variable wraps a Tensor value. Functions in autograd/functions.h compute a value and, when any input
// requires a gradient and grad mode is on, record a Node: the inputs plus a backward closure that holds
// the saved tensors it needs. backward() walks the graph once in reverse topological order, sums the
// gradients flowing into each value (a value used twice gets both contributions), accumulates into the
// leaves' .grad, and frees every closure as soon as it has run, releasing the saved activations.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace hdssl {

struct Node;

struct VariableImpl {
  Tensor value;
  Tensor grad;                     // accumulated gradient (leaves only), undefined until the first backward
  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;   // null for leaves and for values computed without grad
  std::string name;                // parameter name, used in messages
};

class Variable {
 public:
  Variable() = default;
  explicit Variable(Tensor value, bool requires_grad = false, std::string name = "");

  bool defined() const { return impl_ != nullptr; }
  const Tensor& value() const { return impl_->value; }
  Tensor& value() { return impl_->value; }  // in-place updates (optimizer, loading weights)
  const Tensor& grad() const { return impl_->grad; }
  Tensor& grad() { return impl_->grad; }
  void zero_grad() { impl_->grad = Tensor(); }
  bool requires_grad() const { return impl_ && impl_->requires_grad; }
  void set_requires_grad(bool r) { impl_->requires_grad = r; }
  const std::string& name() const { return impl_->name; }
  const Shape& shape() const { return impl_->value.shape(); }
  int64_t size(int64_t d) const { return impl_->value.size(d); }
  DType dtype() const { return impl_->value.dtype(); }
  Device device() const { return impl_->value.device(); }
  bool is_leaf() const { return !impl_->grad_fn; }

  Variable detach() const { return Variable(impl_->value, false, impl_->name); }  // same value, no history
  // Back-propagates from this value. Without a seed the value must have one element and the seed is 1.
  void backward() const;
  void backward(const Tensor& seed) const;

  VariableImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<VariableImpl>& shared() const { return impl_; }

 private:
  std::shared_ptr<VariableImpl> impl_;
};

// The backward closure of one recorded op: given the gradient of its output, fill grad_inputs[i] (same
// shape as inputs[i]) for each i with needs[i]; leave the others undefined.
using GradFn = std::function<void(const Tensor& grad_out, const std::vector<bool>& needs,
                                  std::vector<Tensor>& grad_inputs)>;

struct Node {
  const char* op = "";
  std::vector<Variable> inputs;
  GradFn fn;
};

// Wraps an op's output; records a Node when grad mode is on and some input requires a gradient.
Variable make_result(const char* op, Tensor value, std::vector<Variable> inputs, GradFn fn);

// Grad mode: while a NoGradGuard lives (per thread), nothing is recorded (frozen backbones, inference).
bool grad_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;
 private:
  bool previous_;
};

}  // namespace hdssl
