// The autocast policy (see autocast.h for the table it implements).
#include "autograd/autocast.h"

#include "autograd/functions.h"

namespace hdssl {
namespace {
thread_local Precision t_precision = Precision::FP32;

// Wider floating dtypes first: float64 > float32 > bfloat16 (int32 takes no part).
int width_rank(DType t) { return t == DType::F64 ? 3 : t == DType::F32 ? 2 : t == DType::BF16 ? 1 : 0; }

// The widest floating dtype of `ds` (the first input's dtype when none is floating).
DType promoted(const std::vector<DType>& ds) {
  DType best = ds.empty() ? DType::F32 : ds[0];
  for (DType d : ds)
    if (width_rank(d) > width_rank(best)) best = d;
  return best;
}
}  // namespace

const char* precision_name(Precision p) { return p == Precision::BF16 ? "bf16" : "fp32"; }

Precision parse_precision(const std::string& text) {
  if (text == "fp32") return Precision::FP32;
  if (text == "bf16") return Precision::BF16;
  throw Error("precision '" + text + "': expected fp32 or bf16");
}

Precision current_precision() { return t_precision; }
AutocastGuard::AutocastGuard(Precision p) : previous_(t_precision) { t_precision = p; }
AutocastGuard::~AutocastGuard() { t_precision = previous_; }

const char* op_class_name(OpClass c) {
  switch (c) {
    case OpClass::LowPrecision: return "low precision";
    case OpClass::Normalization: return "normalization";
    case OpClass::FullPrecision: return "full precision";
    default: return "follow";
  }
}

std::vector<DType> autocast_dtypes(OpClass c, Precision p, const std::vector<DType>& inputs) {
  const bool bf16 = p == Precision::BF16;
  std::vector<DType> out = inputs;
  if (c == OpClass::Normalization) {  // x as it comes; its statistics and parameters in x's compute dtype
    for (size_t i = 1; i < out.size(); ++i)
      if (is_floating(out[i]) && !inputs.empty()) out[i] = compute_dtype(inputs[0]);
    return out;
  }
  for (DType& d : out) {  // lower or raise first ...
    if (bf16 && c == OpClass::LowPrecision && d == DType::F32) d = DType::BF16;
    if (bf16 && c == OpClass::FullPrecision && d == DType::BF16) d = DType::F32;
  }
  const DType common = promoted(out);  // ... then mixed operands meet at the widest
  for (DType& d : out)
    if (is_floating(d)) d = common;
  return out;
}

std::vector<Variable> autocast(OpClass c, std::vector<Variable> inputs) {
  std::vector<DType> ds;
  std::vector<size_t> where;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined()) continue;
    ds.push_back(inputs[i].dtype());
    where.push_back(i);
  }
  const std::vector<DType> want = autocast_dtypes(c, t_precision, ds);
  for (size_t k = 0; k < where.size(); ++k)
    if (want[k] != ds[k]) inputs[where[k]] = ag::cast(inputs[where[k]], want[k]);
  return inputs;
}

}  // namespace hdssl
