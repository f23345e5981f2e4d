// bfloat16: the upper 16 bits of an IEEE float32 (1 sign, 8 exponent, 7 mantissa bits). Same range as
// float32, about 3 significant decimal digits. The mixed-precision path stores activations in it and runs
// convolutions and GEMMs on it with float32 accumulation (docs/mixed-precision.md).
//
// Conversion from float rounds to nearest, ties to even, as PyTorch's c10::BFloat16 and CUDA's
// __float2bfloat16_rn do, so the CPU stand-in and the GPU round the same way; a NaN stays a (quiet) NaN.
// Widening to float is exact. The struct is host and device code alike (CUDA kernels use it directly).
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define HDSSL_HD __host__ __device__
#else
#define HDSSL_HD
#endif

namespace hdssl {

HDSSL_HD inline uint16_t bf16_bits_from_float(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x0040u);  // NaN: keep it, make it quiet
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to the even upper half
  return uint16_t(u >> 16);
}

HDSSL_HD inline float float_from_bf16_bits(uint16_t b) {
  const uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

struct bf16 {
  uint16_t bits = 0;
  bf16() = default;
  HDSSL_HD explicit bf16(float f) : bits(bf16_bits_from_float(f)) {}
  HDSSL_HD explicit operator float() const { return float_from_bf16_bits(bits); }
  HDSSL_HD static bf16 from_bits(uint16_t b) {
    bf16 r;
    r.bits = b;
    return r;
  }
};
static_assert(sizeof(bf16) == 2, "bf16 is two bytes");

// Rounds a float to the nearest bfloat16 value and returns it as a float (what storing in bf16 keeps).
HDSSL_HD inline float round_to_bf16(float f) { return float(bf16(f)); }

}  // namespace hdssl
