// The type a kernel computes in for its storage type T: T itself for float and double, float for
// bfloat16. A kernel written as "widen each load, compute in compute_t<T>, narrow each store" then runs
// on bf16 data exactly as the CPU's widening (engine/bf16_widening.h) does: bf16 -> float is exact, the
// float arithmetic is the same, and narrow() rounds with engine/bf16.h's own conversion (nearest even,
// a NaN made quiet the same way), so the bits equal the CPU's whenever the float operations are the same
// ones in the same order. For float and double widen/narrow are the identity, so those kernels are
// unchanged.
#pragma once
#include <type_traits>

#include "engine/bf16.h"

namespace hdssl::cuda::kernels {

template <class T> struct ComputeOf { using type = T; };
template <> struct ComputeOf<bf16> { using type = float; };
template <class T> using compute_t = typename ComputeOf<T>::type;

template <class T>
__device__ inline compute_t<T> widen(T v) {
  if constexpr (std::is_same_v<T, bf16>) return float(v);
  else return v;
}
template <class T>
__device__ inline T narrow(compute_t<T> v) {
  if constexpr (std::is_same_v<T, bf16>) return bf16(v);
  else return v;
}

}  // namespace hdssl::cuda::kernels
