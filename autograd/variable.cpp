// The graph and the backward pass (see variable.h for the idea).
#include "autograd/variable.h"

#include <unordered_map>
#include <unordered_set>

#include "engine/backend.h"

namespace hdssl {
namespace {
thread_local bool t_grad_enabled = true;

// A tensor whose storage no other handle shares (no copy, no view): writing into it cannot be seen elsewhere.
bool sole_owner(const Tensor& t) { return t.storage().use_count() == 1 && t.is_contiguous(); }

// a + b, allocating nothing when a is undefined. The sum goes into a's (else b's) buffer when nothing
// else holds it: a gradient reaching a value from two places (a residual's skip and body) then costs no
// new tensor. A buffer an op's backward also handed to another input, or that a caller kept (a leaf's
// .grad read before this backward), is shared and gets a fresh sum instead.
Tensor accumulate(const Tensor& a, const Tensor& b) {
  if (!a.defined()) return b;
  HDSSL_CHECK(a.shape() == b.shape()) << "gradient shape mismatch " << a.describe() << " vs " << b.describe();
  Tensor out = a.dtype() == b.dtype() && sole_owner(a) ? a
               : a.dtype() == b.dtype() && sole_owner(b) ? b
                                                         : Tensor::empty_like(a);
  backend(a.device()).axpby(1.0, a, 1.0, b, out);
  return out;
}
}  // namespace

bool grad_enabled() { return t_grad_enabled; }
NoGradGuard::NoGradGuard() : previous_(t_grad_enabled) { t_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { t_grad_enabled = previous_; }

Variable::Variable(Tensor value, bool requires_grad, std::string name) : impl_(std::make_shared<VariableImpl>()) {
  impl_->value = std::move(value);
  impl_->requires_grad = requires_grad;
  impl_->name = std::move(name);
}

Variable make_result(const char* op, Tensor value, std::vector<Variable> inputs, GradFn fn) {
  Variable out(std::move(value));
  if (!t_grad_enabled) return out;
  bool any = false;
  for (const Variable& v : inputs) any = any || v.requires_grad();
  if (!any) return out;
  auto node = std::make_shared<Node>();
  node->op = op;
  node->inputs = std::move(inputs);
  node->fn = std::move(fn);
  out.shared()->grad_fn = std::move(node);
  out.shared()->requires_grad = true;
  return out;
}

void Variable::backward() const {
  HDSSL_CHECK(impl_->value.numel() == 1) << "backward() without a seed needs a scalar, got " << impl_->value.describe();
  backward(Tensor::full(impl_->value.shape(), 1.0, impl_->value.dtype(), impl_->value.device()));
}

void Variable::backward(const Tensor& seed) const {
  HDSSL_CHECK(requires_grad()) << "backward() of a value that does not require a gradient";
  HDSSL_CHECK(seed.shape() == value().shape()) << "seed " << seed.describe() << " for " << value().describe();

  // Reverse topological order by an iterative depth-first search over values with a grad_fn.
  // `order` owns its values: clearing a node's inputs below may drop the graph's last reference to them.
  std::vector<std::shared_ptr<VariableImpl>> order;
  std::unordered_set<VariableImpl*> seen;
  std::vector<std::pair<std::shared_ptr<VariableImpl>, size_t>> stack{{impl_, 0}};
  seen.insert(impl_.get());
  while (!stack.empty()) {
    auto& [v, next] = stack.back();
    Node* node = v->grad_fn.get();
    if (node && next < node->inputs.size()) {
      std::shared_ptr<VariableImpl> in = node->inputs[next++].shared();
      if (in && in->grad_fn && !seen.count(in.get())) {
        seen.insert(in.get());
        stack.push_back({std::move(in), 0});
      }
    } else {
      order.push_back(v);
      stack.pop_back();
    }
  }

  if (!impl_->grad_fn) {  // backward of a leaf: its gradient is the seed
    impl_->grad = accumulate(impl_->grad, seed);
    return;
  }
  std::unordered_map<VariableImpl*, Tensor> grads;
  grads[impl_.get()] = seed;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    VariableImpl* v = it->get();
    std::shared_ptr<Node> node = v->grad_fn;
    auto found = grads.find(v);
    if (!node || found == grads.end()) continue;
    Tensor g = std::move(found->second);
    grads.erase(found);
    HDSSL_CHECK(node->fn) << "backward through '" << node->op << "' a second time (its saved tensors are freed)";

    std::vector<bool> needs(node->inputs.size());
    for (size_t i = 0; i < needs.size(); ++i) needs[i] = node->inputs[i].requires_grad();
    std::vector<Tensor> gin(node->inputs.size());
    node->fn(g, needs, gin);

    for (size_t i = 0; i < gin.size(); ++i) {
      if (!needs[i] || !gin[i].defined()) continue;
      VariableImpl* in = node->inputs[i].impl();
      HDSSL_CHECK(gin[i].shape() == in->value.shape())
          << "'" << node->op << "' returned gradient " << gin[i].describe() << " for input " << i << " of "
          << in->value.describe();
      if (in->grad_fn) grads[in] = accumulate(grads[in], gin[i]);
      else in->grad = accumulate(in->grad, gin[i]);  // leaf: .grad accumulates across backward calls
    }
    // Free the closure (saved activations) and the edges: this graph is spent.
    node->fn = nullptr;
    node->inputs.clear();
  }
}

}  // namespace hdssl
