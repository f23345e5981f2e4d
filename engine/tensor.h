// Tensor: a shape, strides, a dtype and a reference-counted storage on one device.
//
// Kernels only see contiguous tensors (they check); reshape() of a contiguous tensor is a free view,
// everything else (crop, concat, transpose) is an explicit op that writes a new tensor. That keeps every
// kernel a plain loop over memory, which is what a reader wants to see.
#pragma once
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "engine/check.h"
#include "engine/device.h"
#include "engine/dtype.h"
#include "engine/shape.h"

namespace hdssl {

// Raw memory on one device, freed through that device's backend when the last tensor lets go.
struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  Device device;
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

class Tensor {
 public:
  Tensor() = default;  // undefined tensor (e.g. an absent bias)

  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor empty_like(const Tensor& t) { return empty(t.shape(), t.dtype(), t.device()); }
  static Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype(), t.device()); }
  // Copies host values into a new tensor; values.size() must equal numel(shape).
  template <class T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device = Device::cpu());

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  const std::vector<int64_t>& strides() const { return strides_; }
  int64_t dim() const { return int64_t(shape_.size()); }
  int64_t size(int64_t d) const { return shape_.at(size_t(d < 0 ? d + dim() : d)); }
  int64_t numel() const { return hdssl::numel(shape_); }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device : Device::cpu(); }
  bool is_contiguous() const { return strides_ == contiguous_strides(shape_); }
  std::string describe() const;  // e.g. "float32[2,16,32,32,16] on cpu"

  // Typed pointer to the first element; checks dtype and contiguity (device memory on CUDA tensors).
  template <class T> T* data() const {
    HDSSL_CHECK(defined()) << "data() of an undefined tensor";
    HDSSL_CHECK(dtype_of<T>() == dtype_) << "data<" << dtype_name(dtype_of<T>()) << ">() of " << describe();
    HDSSL_CHECK(is_contiguous()) << "kernel input must be contiguous: " << describe();
    return reinterpret_cast<T*>(static_cast<char*>(storage_->data) + offset_ * int64_t(dtype_size(dtype_)));
  }
  void* raw() const { return static_cast<char*>(storage_->data) + offset_ * int64_t(dtype_size(dtype_)); }

  Tensor reshape(const Shape& shape) const;   // a view; -1 allowed once
  Tensor to(Device device) const;             // copy to a device (shares storage if already there)
  Tensor to(DType dtype) const;               // converts (shares storage if already that dtype)
  Tensor clone() const;                       // deep copy on the same device
  void copy_(const Tensor& src);              // same shape and dtype, any devices
  template <class T> std::vector<T> to_vector() const;  // host copy of all elements
  double item() const;                        // the single element, as double

  // Storage identity (for tests and the allocator's bookkeeping).
  const std::shared_ptr<Storage>& storage() const { return storage_; }

 private:
  std::shared_ptr<Storage> storage_;
  Shape shape_;
  std::vector<int64_t> strides_;
  int64_t offset_ = 0;
  DType dtype_ = DType::F32;
};

}  // namespace hdssl
