// "Convert, compute in float32, round": how a backend runs a primitive on bfloat16 tensors when it has no
// bf16 kernel of its own for it. Written once, in the dispatch (engine/dispatch.cpp), for every primitive
// and every backend: the CPU backend has no bf16 kernels at all; the CUDA backend has them for the
// convolutions and the GEMM (cuDNN and cuBLAS with float32 accumulation) and the bandwidth-bound kernels
// (elementwise, pooling, upsampling, crop, gather), and lists them in BackendImpl::computes_bf16()
// (cuda/backend.cpp, kNativeBf16).
//
//   Bf16Widening bf(*impl_, "relu_forward", {&x});    // on if x is bf16 and relu has no bf16 kernel
//   impl_->relu_forward(bf.in(x), bf.out(y));         // float32 twins of x and y (or x, y themselves)
//   bf.finish();                                      // y = round_to_bf16(twin of y)
//
// in(): a float32 copy of a bf16 input (exact). out(): a float32 twin of a bf16 output that the primitive
// overwrites; inout(): the same, starting from the output's current values (outputs that accumulate, "+=").
// finish() rounds each twin back into its bf16 tensor (ties to even, engine/bf16.h). float32, float64 and
// int32 tensors pass through untouched, so a call that mixes bf16 activations with float32 batch-norm
// statistics widens only the activations. When the widening is off every method returns its argument.
#pragma once
#include <deque>
#include <initializer_list>
#include <utility>

#include "engine/backend_impl.h"

namespace hdssl {

class Bf16Widening {
 public:
  Bf16Widening(BackendImpl& impl, const char* op, std::initializer_list<const Tensor*> tensors) : impl_(impl) {
    bool any_bf16 = false;
    for (const Tensor* t : tensors) any_bf16 = any_bf16 || (t->defined() && t->dtype() == DType::BF16);
    on_ = any_bf16 && !impl.computes_bf16(op);
  }
  Bf16Widening(const Bf16Widening&) = delete;
  Bf16Widening& operator=(const Bf16Widening&) = delete;

  bool on() const { return on_; }
  const Tensor& in(const Tensor& t) { return widens(t) ? twins_.emplace_back(widened(t)) : t; }
  Tensor& out(Tensor& t) { return widens(t) ? remember(t, Tensor::empty(t.shape(), DType::F32, t.device())) : t; }
  Tensor& inout(Tensor& t) { return widens(t) ? remember(t, widened(t)) : t; }
  void finish() {
    for (auto& [bf, twin] : outputs_) impl_.cast(twin, *bf);
    outputs_.clear();
  }

 private:
  bool widens(const Tensor& t) const { return on_ && t.defined() && t.dtype() == DType::BF16; }
  Tensor widened(const Tensor& t) {
    Tensor f = Tensor::empty(t.shape(), DType::F32, t.device());
    if (t.numel()) impl_.cast(t, f);
    return f;
  }
  Tensor& remember(Tensor& bf, Tensor twin) {
    outputs_.emplace_back(&bf, std::move(twin));
    return outputs_.back().second;
  }

  BackendImpl& impl_;
  bool on_ = false;
  std::deque<Tensor> twins_;                     // deque: references handed out stay valid
  std::deque<std::pair<Tensor*, Tensor>> outputs_;
};

}  // namespace hdssl
