// Tensor construction, views, conversions and host transfers. All memory goes through the device's
// backend (engine/backend.h), so the same code serves CPU and CUDA tensors.
#include "engine/tensor.h"

#include "engine/backend.h"

namespace hdssl {

Storage::Storage(size_t n, Device d) : bytes(n), device(d) {
  data = n ? backend(d).allocate(n) : nullptr;
}

Storage::~Storage() {
  if (data) backend(device).deallocate(data, bytes);
}

Device Device::parse(const std::string& s) {
  if (s == "cpu") return cpu();
  if (s == "cuda") return cuda(0);
  if (s.rfind("cuda:", 0) == 0) {
    try {
      size_t used = 0;
      int i = std::stoi(s.substr(5), &used);
      if (used == s.size() - 5 && i >= 0) return cuda(i);
    } catch (...) {
    }
  }
  throw Error("unknown device '" + s + "' (expected cpu, cuda or cuda:N)");
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape) HDSSL_CHECK(d >= 0) << "negative dimension in shape " << shape_str(shape);
  Tensor t;
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  t.dtype_ = dtype;
  t.storage_ = std::make_shared<Storage>(size_t(hdssl::numel(shape)) * dtype_size(dtype), device);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  if (t.numel()) backend(device).fill(t, value);
  return t;
}

template <class T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape, Device device) {
  HDSSL_CHECK(int64_t(values.size()) == hdssl::numel(shape))
      << values.size() << " values for shape " << shape_str(shape);
  Tensor t = empty(shape, dtype_of<T>(), device);
  if (!values.empty()) backend(device).copy_from_host(t.raw(), values.data(), t.nbytes());
  return t;
}
template Tensor Tensor::from_vector<float>(const std::vector<float>&, const Shape&, Device);
template Tensor Tensor::from_vector<double>(const std::vector<double>&, const Shape&, Device);
template Tensor Tensor::from_vector<int32_t>(const std::vector<int32_t>&, const Shape&, Device);
template Tensor Tensor::from_vector<bf16>(const std::vector<bf16>&, const Shape&, Device);

std::string Tensor::describe() const {
  if (!defined()) return "undefined tensor";
  return std::string(dtype_name(dtype_)) + shape_str(shape_) + " on " + device().str();
}

Tensor Tensor::reshape(const Shape& shape) const {
  HDSSL_CHECK(is_contiguous()) << "reshape of a non-contiguous tensor " << describe();
  Shape s = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      HDSSL_CHECK(infer < 0) << "reshape: more than one -1 in " << shape_str(shape);
      infer = int64_t(i);
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) {
    HDSSL_CHECK(known > 0 && numel() % known == 0) << "reshape " << describe() << " to " << shape_str(shape);
    s[size_t(infer)] = numel() / known;
  }
  HDSSL_CHECK(hdssl::numel(s) == numel()) << "reshape " << describe() << " to " << shape_str(shape);
  Tensor t = *this;
  t.shape_ = s;
  t.strides_ = contiguous_strides(s);
  return t;
}

void Tensor::copy_(const Tensor& src) {
  HDSSL_CHECK(src.shape() == shape_ && src.dtype() == dtype_)
      << "copy_ from " << src.describe() << " into " << describe();
  HDSSL_CHECK(src.is_contiguous() && is_contiguous()) << "copy_ needs contiguous tensors";
  if (!numel()) return;
  Device s = src.device(), d = device();
  if (s == d) {
    keep_alive_while_capturing(src);  // a recorded copy names raw memory (engine/step_graph.h)
    keep_alive_while_capturing(*this);
    backend(d).copy_device(raw(), src.raw(), nbytes());
  } else if (s.is_cpu()) {
    backend(d).copy_from_host(raw(), src.raw(), nbytes());
  } else if (d.is_cpu()) {
    backend(s).copy_to_host(raw(), src.raw(), nbytes());
  } else {  // between two CUDA devices: stage through the host
    Tensor host = src.to(Device::cpu());
    backend(d).copy_from_host(raw(), host.raw(), nbytes());
  }
}

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  Tensor t = empty(shape_, dtype_, device);
  t.copy_(is_contiguous() ? *this : clone());
  return t;
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return *this;
  Tensor t = empty(shape_, dtype, device());
  if (numel()) backend(device()).cast(*this, t);
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape_, dtype_, device());
  t.copy_(*this);
  return t;
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  HDSSL_CHECK(dtype_of<T>() == dtype_) << "to_vector<" << dtype_name(dtype_of<T>()) << "> of " << describe();
  std::vector<T> v(static_cast<size_t>(numel()));
  if (v.empty()) return v;
  if (device().is_cpu()) {
    refuse_inside_capture("Tensor::to_vector / item() of a CPU tensor");
    count_host_sync();  // the CPU backend's stand-in for a device -> host copy (engine/backend.h)
    std::memcpy(v.data(), raw(), nbytes());
  } else {
    backend(device()).copy_to_host(v.data(), raw(), nbytes());  // counted there
  }
  return v;
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<bf16> Tensor::to_vector<bf16>() const;

double Tensor::item() const {
  HDSSL_CHECK(numel() == 1) << "item() of " << describe();
  switch (dtype_) {
    case DType::F32: return to_vector<float>()[0];
    case DType::F64: return to_vector<double>()[0];
    case DType::BF16: return double(float(to_vector<bf16>()[0]));
    default: return to_vector<int32_t>()[0];
  }
}

}  // namespace hdssl
