// Contract: the argument checks of one backend call, each a line that throws hdssl::Error naming the
// primitive, the argument and what was expected. Used by the dispatch (engine/dispatch.cpp), the one place
// where every primitive's contract is checked before a backend runs.
//
//   const Contract c("relu_forward", device());
//   c.floating(x, "x").same(x, y, "y");                   // defined, on the device, contiguous, ...
//   HDSSL_REQUIRE(c, tau > 0) << "tau must be > 0, got " << tau;
#pragma once
#include "engine/tensor.h"

namespace hdssl {

// The checks of one call: `op` names the primitive in every message.
class Contract {
 public:
  Contract(const char* op, Device device) : op_(op), device_(device) {}

  // Defined, on the backend's device, contiguous.
  const Contract& tensor(const Tensor& t, const char* name) const {
    HDSSL_CHECK(t.defined()) << op_ << ": " << name << " is undefined";
    HDSSL_CHECK(t.device() == device_) << op_ << ": " << name << " must be on " << device_.str() << ", got "
                                       << t.describe();
    HDSSL_CHECK(t.is_contiguous()) << op_ << ": " << name << " must be contiguous, got " << t.describe();
    return *this;
  }
  // A tensor of float32, float64 or bfloat16.
  const Contract& floating(const Tensor& t, const char* name) const {
    tensor(t, name);
    HDSSL_CHECK(is_floating(t.dtype())) << op_ << ": " << name << " must be float32, float64 or bfloat16, got "
                                        << t.describe();
    return *this;
  }
  // b has a's shape and dtype.
  const Contract& same(const Tensor& a, const Tensor& b, const char* name) const {
    tensor(b, name);
    HDSSL_CHECK(a.shape() == b.shape() && a.dtype() == b.dtype())
        << op_ << ": " << name << " " << b.describe() << " must match " << a.describe();
    return *this;
  }
  // t has the given shape and like's dtype.
  const Contract& shaped(const Tensor& t, const Shape& shape, const Tensor& like, const char* name) const {
    tensor(t, name);
    HDSSL_CHECK(t.shape() == shape && t.dtype() == like.dtype())
        << op_ << ": " << name << " must be " << dtype_name(like.dtype()) << shape_str(shape) << ", got "
        << t.describe();
    return *this;
  }
  const Contract& vec(const Tensor& t, int64_t n, const Tensor& like, const char* name) const {
    return shaped(t, Shape{n}, like, name);
  }
  // [n] of the dtype x computes in (engine/dtype.h compute_dtype: float32 for bfloat16 x): batch-norm
  // parameters and statistics.
  const Contract& stats_vec(const Tensor& t, int64_t n, const Tensor& x, const char* name) const {
    tensor(t, name);
    const DType want = compute_dtype(x.dtype());
    HDSSL_CHECK(t.shape() == Shape{n} && t.dtype() == want)
        << op_ << ": " << name << " must be " << dtype_name(want) << shape_str(Shape{n}) << " for x "
        << x.describe() << ", got " << t.describe();
    return *this;
  }
  const Contract& scalar(const Tensor& t, const Tensor& like, const char* name) const {
    return shaped(t, Shape{1}, like, name);
  }
  // A float32/float64 tensor with the given number of dims (or at least that many with at_least).
  const Contract& dims(const Tensor& t, int64_t d, const char* name, bool at_least = false) const {
    floating(t, name);
    HDSSL_CHECK(at_least ? t.dim() >= d : t.dim() == d)
        << op_ << ": " << name << " must have " << (at_least ? "at least " : "") << d << " dims, got "
        << t.describe();
    return *this;
  }
  const Contract& volume(const Tensor& t, const char* name) const { return dims(t, 5, name); }
  const Contract& int32(const Tensor& t, const Shape& shape, const char* name) const {
    tensor(t, name);
    HDSSL_CHECK(t.dtype() == DType::I32 && t.shape() == shape)
        << op_ << ": " << name << " must be int32" << shape_str(shape) << ", got " << t.describe();
    return *this;
  }
  const char* op() const { return op_; }

 private:
  const char* op_;
  Device device_;
};

// A condition beyond the tensor checks: HDSSL_REQUIRE(c, cond) << "what was expected"; the message is only
// built when the check fails.
#define HDSSL_REQUIRE(c, cond) HDSSL_CHECK(cond) << (c).op() << ": "

}  // namespace hdssl
