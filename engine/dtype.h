// Element types: float32 for training, float64 for gradient checks, bfloat16 for the mixed-precision
// path's activations (engine/bf16.h), int32 for voxel coordinates, pooling indices and label maps.
#pragma once
#include <cstddef>
#include <cstdint>

#include "engine/bf16.h"

namespace hdssl {

enum class DType : uint8_t { F32, F64, I32, BF16 };

inline size_t dtype_size(DType t) { return t == DType::F64 ? 8 : t == DType::BF16 ? 2 : 4; }
inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::F64: return "float64";
    case DType::BF16: return "bfloat16";
    default: return "int32";
  }
}
inline bool is_floating(DType t) { return t != DType::I32; }

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<double>() { return DType::F64; }
template <> constexpr DType dtype_of<int32_t>() { return DType::I32; }
template <> constexpr DType dtype_of<bf16>() { return DType::BF16; }

// The dtype a primitive computes and accumulates in for inputs of dtype t: bfloat16 data is computed in
// float32 (batch-norm statistics and parameters of bf16 activations are float32 too).
inline DType compute_dtype(DType t) { return t == DType::BF16 ? DType::F32 : t; }

}  // namespace hdssl
