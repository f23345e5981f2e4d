// Module: the small base every network piece derives from.
//
// A module owns named parameters (Variables that require a gradient), named buffers (BatchNorm running
// statistics, plain Tensors) and named child modules. Names join with dots exactly like a PyTorch
// state dict ("left_blocks.0.layers.1.layers.2.weight"), so a checkpoint written here loads in Python and
// the other way round. Modules are neither copied nor moved: children are held by unique_ptr and the
// parent keeps raw pointers to their registered members.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/variable.h"
#include "engine/random.h"

namespace hdssl::models {

// A buffer: a float Tensor (running mean / variance) or an integer counter (num_batches_tracked, saved
// as int64 like PyTorch's).
struct Buffer {
  Tensor* tensor = nullptr;
  int64_t* counter = nullptr;
};

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Every parameter / buffer of this module and its children, depth first in registration order.
  std::vector<std::pair<std::string, Variable>> named_parameters(const std::string& prefix = "") const;
  std::vector<std::pair<std::string, Buffer>> named_buffers(const std::string& prefix = "") const;
  std::vector<Variable> parameters() const;        // the trainable ones (requires_grad) only
  int64_t parameter_count() const;                 // elements of all parameters, trainable or not

  void train(bool on = true);                      // BatchNorm: batch statistics (train) or running (eval)
  bool training() const { return training_; }
  void to(Device device);                          // moves parameters and buffers
  void set_requires_grad(bool on);                 // freezes (false) or unfreezes every parameter
  void zero_grad();

 protected:
  Variable& register_parameter(const std::string& name, Tensor value);
  void register_buffer(const std::string& name, Tensor* tensor);
  void register_counter(const std::string& name, int64_t* counter);
  template <class M>
  M& register_module(const std::string& name, std::unique_ptr<M> m) {
    M& ref = *m;
    children_.emplace_back(name, std::move(m));
    return ref;
  }

 private:
  std::vector<std::pair<std::string, Variable>> params_;
  std::vector<std::pair<std::string, Buffer>> buffers_;
  std::vector<std::pair<std::string, std::unique_ptr<Module>>> children_;
  bool training_ = true;
};

// A module that holds only children (PyTorch's ModuleList / Sequential when the forward is written out).
class ModuleList : public Module {
 public:
  template <class M>
  M& add(std::unique_ptr<M> m) { return register_module(std::to_string(size_++), std::move(m)); }
  template <class M>
  M& add_named(const std::string& name, std::unique_ptr<M> m) { return register_module(name, std::move(m)); }
 private:
  int size_ = 0;
};

// Parameter initialization, PyTorch's defaults: kaiming_uniform(a = sqrt(5)) on a weight is
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and so is the bias.
Tensor uniform_tensor(const Shape& shape, double bound, Rng& rng, DType dtype, Device device);

// Construction options shared by all modules.
struct ModuleOptions {
  DType dtype = DType::F32;
  Device device = Device::cpu();
};

}  // namespace hdssl::models
