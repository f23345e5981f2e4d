// Mixed precision: the autocast policy, written once (docs/mixed-precision.md).
//
// A thread-local precision (FP32 by default) says how the differentiable functions of autograd/functions.h
// treat the dtypes of their inputs. Each function names its OpClass and passes its inputs through
// autocast(); the one table, autocast_dtypes(), says what each input is cast to:
//
//   class         precision BF16                                        precision FP32
//   LowPrecision  float32 / bf16 inputs -> bf16 (conv3d, linear, matmul)  follow (promote mixed operands)
//   Normalization x as it comes; gamma, beta -> compute_dtype(x) (float32 for bf16 x): batch norm
//   FullPrecision bf16 inputs -> float32 (log-sum-exp, l2-normalisation, InfoNCE, MSE, BCE, soft Dice, sum)
//   Follow        mixed bf16 / float32 / float64 operands promote to the widest (add, relu, pool, concat, ...)
//
// float64 inputs are never lowered (as PyTorch's autocast leaves float64 alone), so the float64 gradient
// checks mean the same under either precision. The casts are ag::cast nodes: the backward casts each
// gradient back to its input's dtype, so float32 master weights get float32 .grad under BF16. Under FP32
// with inputs of one dtype (every model of this repo) autocast() returns its inputs untouched: nothing is
// recorded, nothing changes, bit for bit.
//
//   AutocastGuard bf16(Precision::BF16);   // this thread, until the guard goes
//   Variable loss = model.loss(batch);     // convolutions in bf16, losses in float32
#pragma once
#include <string>
#include <vector>

#include "autograd/variable.h"

namespace hdssl {

enum class Precision { FP32, BF16 };

const char* precision_name(Precision p);             // "fp32" | "bf16"
Precision parse_precision(const std::string& text);  // throws Error naming the text and the choices

// The current thread's precision, and a scoped change of it.
Precision current_precision();
class AutocastGuard {
 public:
  explicit AutocastGuard(Precision p);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  Precision previous_;
};

enum class OpClass { LowPrecision, Normalization, FullPrecision, Follow };
const char* op_class_name(OpClass c);

// The table: the dtype each input is cast to by an op of class c under precision p, given the dtypes the
// inputs come in (an int32 input keeps its dtype and takes no part in promotion).
std::vector<DType> autocast_dtypes(OpClass c, Precision p, const std::vector<DType>& inputs);

// Applies the table under the current precision: each defined input whose dtype the table changes is
// replaced by ag::cast(input, dtype); the others are returned as they are.
std::vector<Variable> autocast(OpClass c, std::vector<Variable> inputs);

}  // namespace hdssl
