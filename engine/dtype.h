// Element types: float32 for training, float64 for gradient checks, int32 for voxel coordinates,
// pooling indices and label maps.
#pragma once
#include <cstddef>
#include <cstdint>

namespace hdssl {

enum class DType : uint8_t { F32, F64, I32 };

inline size_t dtype_size(DType t) { return t == DType::F64 ? 8 : 4; }
inline const char* dtype_name(DType t) {
  switch (t) { case DType::F32: return "float32"; case DType::F64: return "float64"; default: return "int32"; }
}
inline bool is_floating(DType t) { return t != DType::I32; }

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<double>() { return DType::F64; }
template <> constexpr DType dtype_of<int32_t>() { return DType::I32; }

}  // namespace hdssl
