// The Module base: registration, traversal by dotted names, device moves and initialization.
#include "models/module.h"

#include <cmath>

namespace hdssl::models {
namespace {
std::string join(const std::string& prefix, const std::string& name) { return prefix.empty() ? name : prefix + "." + name; }
}  // namespace

Variable& Module::register_parameter(const std::string& name, Tensor value) {
  params_.emplace_back(name, Variable(std::move(value), true, name));
  return params_.back().second;
}

void Module::register_buffer(const std::string& name, Tensor* tensor) { buffers_.emplace_back(name, Buffer{tensor, nullptr}); }
void Module::register_counter(const std::string& name, int64_t* counter) { buffers_.emplace_back(name, Buffer{nullptr, counter}); }

std::vector<std::pair<std::string, Variable>> Module::named_parameters(const std::string& prefix) const {
  std::vector<std::pair<std::string, Variable>> out;
  for (const auto& [n, v] : params_) out.emplace_back(join(prefix, n), v);
  for (const auto& [n, c] : children_) {
    auto sub = c->named_parameters(join(prefix, n));
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

std::vector<std::pair<std::string, Buffer>> Module::named_buffers(const std::string& prefix) const {
  std::vector<std::pair<std::string, Buffer>> out;
  for (const auto& [n, b] : buffers_) out.emplace_back(join(prefix, n), b);
  for (const auto& [n, c] : children_) {
    auto sub = c->named_buffers(join(prefix, n));
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

std::vector<Variable> Module::parameters() const {
  std::vector<Variable> out;
  for (auto& [n, v] : named_parameters())
    if (v.requires_grad()) out.push_back(v);
  return out;
}

int64_t Module::parameter_count() const {
  int64_t n = 0;
  for (auto& [name, v] : named_parameters()) n += v.value().numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [n, c] : children_) c->train(on);
}

void Module::to(Device device) {
  for (auto& [n, v] : params_) {
    v.value() = v.value().to(device);
    v.zero_grad();
  }
  for (auto& [n, b] : buffers_)
    if (b.tensor) *b.tensor = b.tensor->to(device);
  for (auto& [n, c] : children_) c->to(device);
}

void Module::set_requires_grad(bool on) {
  for (auto& [n, v] : params_) v.set_requires_grad(on);
  for (auto& [n, c] : children_) c->set_requires_grad(on);
}

void Module::zero_grad() {
  for (auto& [n, v] : params_) v.zero_grad();
  for (auto& [n, c] : children_) c->zero_grad();
}

Tensor uniform_tensor(const Shape& shape, double bound, Rng& rng, DType dtype, Device device) {
  std::vector<double> v(size_t(numel(shape)));
  for (double& x : v) x = rng.uniform(-bound, bound);
  if (dtype == DType::F64) return Tensor::from_vector(v, shape, device);
  std::vector<float> f(v.begin(), v.end());
  return Tensor::from_vector(f, shape, device);
}

}  // namespace hdssl::models
