// bfloat16 on the GPU against the CPU. The CPU backend has no bf16 kernel: the dispatch converts its bf16
// tensors to float32, computes and rounds the outputs to nearest even (engine/bf16_widening.h), and that
// is the reference. The GPU runs the primitives cuda/backend.cpp lists in computes_bf16 on bf16 storage.
//
// Bit for bit: cast and fill (the same conversion code, engine/bf16.h, on both sides), and the kernels that
// compute in float with the CPU's float operations in the CPU's order (cuda/kernels/compute_type.cuh):
// axpby (both products and the sum rounded separately: no FMA on either side), mul, relu forward and
// backward, add_row_vector, max-pool forward (values and indices) and backward, upsample forward and
// backward (the 8-term sum in the CPU's order), crop forward and backward, the gather forward. Compared as
// bit patterns, so signed zeros and NaN payloads count; except that a NaN *produced by arithmetic* (axpby,
// mul, add_row_vector, the upsample sum) or by a float <-> double conversion (casts from and to float64)
// matches any NaN: IEEE 754 leaves its payload to the hardware (x86 keeps the operand's, NVIDIA GPUs may
// return a canonical NaN), and bf16 keeps the payload's top bits.
//
// With a tolerance: the convolutions (cuDNN, bf16 tensor cores) and the GEMM (cublasGemmEx), which both
// accumulate in float32 (products of two bf16 values are exact in float32) but in another order than the
// CPU, and round to bf16 once. Two float32 sums of the same n products differ by float rounding noise; once
// rounded to bf16 they agree, or differ by one bf16 ulp where they straddle a rounding boundary, and one
// ulp is at most 2^-7 of the value. So, element by element, |gpu - cpu| <= atol + rtol |cpu| with
// rtol = 2^-6 (two ulps) and atol = 2^-8 sqrt(n) for sums of n products of values in [-1, 1): their spread
// is sqrt(n)/3, so atol is about 1% of it. atol covers outputs near zero, whose ulps are tiny while the
// float summation noise is not, and algorithms that transform their inputs in reduced precision; a wrong
// layout, dtype or scaling gives errors of the order of sqrt(n)/3 and fails. Plus, over the whole tensor,
// relative L2 error <= 1e-2 (one-ulp differences everywhere would give at most 2^-7 = 7.8e-3). The
// convolution's bias add rounds once more on the GPU (the convolution to bf16, then + bias to bf16): half
// an ulp of the pre-bias value, so the forward with bias adds 2^-9 max|conv| to atol.
//
// Every test here also runs in the CPU self-test (HDSSL_PARITY_SELFTEST=1, CPU against CPU) except the
// allocation count, which is about the CUDA backend itself.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>

#include "cuda/allocator.h"
#include "cuda/context.h"
#include "engine/bf16.h"
#include "tests/cuda/parity.h"

namespace hdssl::test {
namespace {

constexpr DType kBF = DType::BF16;
const float kNaN = std::numeric_limits<float>::quiet_NaN(), kInf = std::numeric_limits<float>::infinity();

// ------------------------------------------------------------------------------------------ helpers
float float_of_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Each element's bit pattern (bf16, float32, float64) or value (int32), and whether it is a NaN.
struct Bits {
  std::vector<uint64_t> bits;
  std::vector<bool> nan;
};
Bits bits_of(const Tensor& t) {
  const Tensor c = t.to(Device::cpu());
  Bits b;
  auto add = [&](uint64_t u, bool is_nan) {
    b.bits.push_back(u);
    b.nan.push_back(is_nan);
  };
  switch (c.dtype()) {
    case DType::BF16:
      for (bf16 v : c.to_vector<bf16>()) add(v.bits, std::isnan(float(v)));
      break;
    case DType::F32:
      for (float v : c.to_vector<float>()) {
        uint32_t u;
        std::memcpy(&u, &v, sizeof u);
        add(u, std::isnan(v));
      }
      break;
    case DType::F64:
      for (double v : c.to_vector<double>()) {
        uint64_t u;
        std::memcpy(&u, &v, sizeof u);
        add(u, std::isnan(v));
      }
      break;
    case DType::I32:
      for (int32_t v : c.to_vector<int32_t>()) add(uint32_t(v), false);
      break;
  }
  return b;
}

enum class NaNs { SameBits, AnyPayload };

::testing::AssertionResult same_bits(const Tensor& cpu, const Tensor& got, NaNs nans) {
  if (cpu.shape() != got.shape() || cpu.dtype() != got.dtype())
    return ::testing::AssertionFailure() << "shape/dtype: " << cpu.describe() << " vs " << got.describe();
  const Bits a = bits_of(cpu), b = bits_of(got);
  int64_t bad = 0, first = -1;
  for (size_t i = 0; i < a.bits.size(); ++i) {
    const bool ok = a.bits[i] == b.bits[i] || (nans == NaNs::AnyPayload && a.nan[i] && b.nan[i]);
    if (ok) continue;
    if (first < 0) first = int64_t(i);
    ++bad;
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " of " << a.bits.size() << " elements differ in their bits; first at "
                                       << "flat index " << first << ": cpu 0x" << std::hex << a.bits[size_t(first)]
                                       << ", gpu 0x" << b.bits[size_t(first)] << std::dec << " in " << cpu.describe();
}

// Runs f on the CPU (the widened reference) and on the GPU and compares every output bit for bit.
void expect_bitwise(const std::function<std::vector<Tensor>(Device)>& f, NaNs nans, const std::string& what) {
  const std::vector<Tensor> want = f(Device::cpu());
  const std::vector<Tensor> got = f(gpu());
  ASSERT_EQ(want.size(), got.size()) << what;
  for (size_t k = 0; k < want.size(); ++k) EXPECT_TRUE(same_bits(want[k], got[k], nans)) << what << ", output " << k;
}

// Random bf16 values in [lo, hi); with `specials`, NaN, -NaN, +-inf, -0 and +0 planted at spread-out places.
Tensor random_bf16(const Shape& s, Rng& rng, double lo = -1.0, double hi = 1.0, bool specials = false) {
  std::vector<float> v(size_t(numel(s)));
  for (float& x : v) x = float(rng.uniform(lo, hi));
  if (specials) {
    const float sp[] = {kNaN, -kNaN, kInf, -kInf, -0.0f, 0.0f};
    for (size_t i = 0; i < 6 && i < v.size(); ++i) v[(i * 7919 + 3) % v.size()] = sp[i];
  }
  return Tensor::from_vector(v, s).to(kBF);
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : host_doubles(t)) m = std::max(m, std::fabs(v));
  return m;
}

// ||gpu - cpu|| <= limit * ||cpu|| (2-norms over the whole tensor).
::testing::AssertionResult rel_l2_at_most(const Tensor& cpu, const Tensor& got, double limit) {
  const auto a = host_doubles(cpu), b = host_doubles(got);
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += a[i] * a[i];
  }
  const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  if (rel <= limit) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "relative L2 error " << rel << " > " << limit << " in " << cpu.describe();
}

// The tolerance of a bf16 sum of n products of values in [-1, 1) (see the note at the top).
Tol sum_tol(double n, double extra_atol = 0) { return Tol{0x1p-8 * std::sqrt(n) + extra_atol, 0x1p-6}; }

void expect_close_bf16(const Tensor& cpu, const Tensor& got, Tol tl, const std::string& what) {
  EXPECT_TRUE(close(cpu, got, tl)) << what;
  EXPECT_TRUE(rel_l2_at_most(cpu, got, 1e-2)) << what;
}

const std::vector<Shape> kShapes = {{1}, {7}, {3, 5}, {2, 3, 5, 7, 3}, {1000003}};

// ------------------------------------------------------------------------------------------ cast, fill
// float32 bit patterns whose rounding to bf16 is the interesting part: ties to even (both ways, both
// signs), one bit above and below a tie, the largest float (rounds to inf), subnormals (one a tie),
// zeros, infinities, quiet and signalling NaNs of both signs with payloads.
const std::vector<uint32_t> kFloatBits = {
    0x3f808000u, 0x3f818000u, 0xbf808000u, 0xbf818000u, 0x3f808001u, 0x3f807fffu, 0x7f7fffffu, 0x7f7f7fffu,
    0xff7fffffu, 0x00000001u, 0x00008000u, 0x00018000u, 0x807fffffu, 0x00000000u, 0x80000000u, 0x7f800000u,
    0xff800000u, 0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff812345u, 0x7fc0ffffu, 0x3eaaaaabu, 0x40490fdbu};

TEST(CudaBf16, CastToAndFromBf16BitForBit) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(70);
  std::vector<float> fv;
  for (uint32_t u : kFloatBits) fv.push_back(float_of_bits(u));
  for (int i = 0; i < 4000; ++i) fv.push_back(float(rng.uniform(-300, 300)));
  const Tensor f32 = Tensor::from_vector(fv, {int64_t(fv.size())});
  // doubles: random ones (double -> float -> bf16: the CPU's two roundings), and ties of the float step
  std::vector<double> dv = {1.0 + 0x1p-24, 1.0 + 0x1p-8, 1.0 + 0x1p-8 + 0x1p-30, -3.0e38, 1e300, -1e-300, 0.0,
                            std::numeric_limits<double>::quiet_NaN(), -std::numeric_limits<double>::infinity()};
  for (int i = 0; i < 4000; ++i) dv.push_back(rng.uniform(-1e5, 1e5));
  const Tensor f64 = Tensor::from_vector(dv, {int64_t(dv.size())});
  // every bf16 bit pattern, NaNs of all kinds included
  std::vector<bf16> all;
  for (uint32_t u = 0; u < 65536; ++u) all.push_back(bf16::from_bits(uint16_t(u)));
  const Tensor bf_all = Tensor::from_vector(all, {65536});
  auto cast_to = [&](const Tensor& x, DType to, const std::string& what, NaNs nans = NaNs::SameBits) {
    expect_bitwise([&](Device d) {
      Tensor o = output(x.shape(), to, d);
      backend(d).cast(on(d, x), o);
      return std::vector<Tensor>{o};
    }, nans, what);
  };
  // bf16 <-> float32 is integer work on the bits on both sides (engine/bf16.h), NaN payloads included. A
  // conversion through float64 uses the hardware's float <-> double conversion, which may return a
  // canonical NaN on the GPU (x86 keeps the payload): there a NaN matches any NaN.
  cast_to(f32, kBF, "cast float32 -> bfloat16");
  cast_to(f64, kBF, "cast float64 -> bfloat16", NaNs::AnyPayload);
  cast_to(bf_all, DType::F32, "cast bfloat16 -> float32 (all 65536 patterns)");
  cast_to(bf_all, DType::F64, "cast bfloat16 -> float64 (all 65536 patterns)", NaNs::AnyPayload);
  cast_to(bf_all, kBF, "cast bfloat16 -> bfloat16 (all 65536 patterns)");
  // int32 <-> bf16: finite values in range only (a NaN or out-of-range float -> int is undefined in C++)
  const Tensor ints = random_int({3001}, rng, -70000, 70000);
  cast_to(ints, kBF, "cast int32 -> bfloat16");
  cast_to(random_bf16({3001}, rng, -1e6, 1e6), DType::I32, "cast bfloat16 -> int32");
}

TEST(CudaBf16, FillBitForBit) {
  HDSSL_REQUIRE_CUDA();
  for (double v : {0.0, -0.0, 1.0, -2.5, 0.1, 1.0 + 0x1p-8, 3.0e38, 1e39, -1e-40,
                   std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()})
    expect_bitwise([&](Device d) {
      Tensor o = output({1000}, kBF, d);
      backend(d).fill(o, v);
      return std::vector<Tensor>{o};
    }, NaNs::SameBits, "fill bfloat16 with " + std::to_string(v));
}

// ------------------------------------------------------------------------------------------ elementwise
TEST(CudaBf16, AxpbyMulReluBitForBit) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(71);
  for (const Shape& s : kShapes) {
    const Tensor x = random_bf16(s, rng, -3, 3, true), y = random_bf16(s, rng, -3, 3, true);
    expect_bitwise([&](Device d) {
      Backend& b = backend(d);
      Tensor a1 = output(s, kBF, d), a2 = output(s, kBF, d), m = output(s, kBF, d);
      b.axpby(0.75, on(d, x), -1.25, on(d, y), a1);
      b.axpby(0.1, on(d, x), 1.0 / 3.0, on(d, y), a2);  // scalars rounded to float first, on both sides
      b.mul(on(d, x), on(d, y), m);
      return std::vector<Tensor>{a1, a2, m};
    }, NaNs::AnyPayload, "axpby/mul bfloat16" + shape_str(s));
    expect_bitwise([&](Device d) {
      Backend& b = backend(d);
      Tensor r = output(s, kBF, d), dr = output(s, kBF, d);
      b.relu_forward(on(d, x), r);
      b.relu_backward(r, on(d, y), dr);
      return std::vector<Tensor>{r, dr};
    }, NaNs::SameBits, "relu bfloat16" + shape_str(s));
  }
}

TEST(CudaBf16, AddRowVectorBitForBit) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(72);
  for (Shape s : std::vector<Shape>{{1, 1}, {7, 3}, {1025, 160}}) {
    const Tensor x = random_bf16(s, rng, -2, 2, true), v = random_bf16({s[1]}, rng);
    expect_bitwise([&](Device d) {
      Tensor o = output(s, kBF, d);
      backend(d).add_row_vector(on(d, x), on(d, v), o);
      return std::vector<Tensor>{o};
    }, NaNs::AnyPayload, "add_row_vector bfloat16" + shape_str(s));
  }
}

// ------------------------------------------------------------------------------------------ pool, upsample, crop
const std::vector<Shape> kVolumes = {{1, 1, 1, 1, 1}, {2, 3, 4, 6, 8}, {1, 2, 5, 7, 3}, {2, 4, 9, 1, 6},
                                     {3, 5, 17, 13, 11}};

TEST(CudaBf16, MaxPoolUpsampleCropBitForBit) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(73);
  for (const Shape& s : kVolumes) {
    const Shape half{s[0], s[1], (s[2] + 1) / 2, (s[3] + 1) / 2, (s[4] + 1) / 2};
    const Shape twice{s[0], s[1], 2 * s[2], 2 * s[3], 2 * s[4]};
    const Tensor x = random_bf16(s, rng, -1, 1, true), dyh = random_bf16(half, rng), dy2 = random_bf16(twice, rng);
    const Tensor ties = random_int(s, rng, 0, 3).to(kBF);  // many equal values: the first maximum wins
    expect_bitwise([&](Device d) {
      Backend& b = backend(d);
      Tensor y = output(half, kBF, d), idx = output(half, DType::I32, d), dx = output(s, kBF, d);
      Tensor yt = output(half, kBF, d), idxt = output(half, DType::I32, d);
      Tensor u = output(twice, kBF, d), du = output(s, kBF, d);
      b.maxpool2_forward(on(d, x), y, idx);
      b.maxpool2_backward(on(d, dyh), idx, dx);
      b.maxpool2_forward(on(d, ties), yt, idxt);
      b.upsample2_forward(on(d, x), u);
      b.upsample2_backward(on(d, dy2), du);
      return std::vector<Tensor>{y, idx, dx, yt, idxt, u, du};
    }, NaNs::SameBits, "maxpool2/upsample2 bfloat16" + shape_str(s));
  }
  struct Case {
    Shape big, box;
    int64_t o[3];
  };
  const std::vector<Case> cases = {{{2, 3, 9, 8, 7}, {2, 3, 8, 8, 6}, {0, 0, 0}},
                                   {{1, 2, 5, 6, 7}, {1, 2, 3, 1, 4}, {2, 5, 3}},
                                   {{2, 1, 4, 4, 4}, {2, 1, 4, 4, 4}, {0, 0, 0}}};
  for (const Case& c : cases) {
    const Tensor x = random_bf16(c.big, rng, -1, 1, true), dy = random_bf16(c.box, rng, -1, 1, true);
    expect_bitwise([&](Device d) {
      Tensor y = output(c.box, kBF, d), dx = output(c.big, kBF, d);
      backend(d).crop_forward(on(d, x), y, c.o);
      backend(d).crop_backward(on(d, dy), dx, c.o);
      return std::vector<Tensor>{y, dx};
    }, NaNs::SameBits, "crop bfloat16" + shape_str(c.big) + " -> " + shape_str(c.box));
  }
}

// The upsample backward's sums with NaN and infinities in dy: arithmetic NaNs, so any payload.
TEST(CudaBf16, UpsampleBackwardWithSpecialsBitForBit) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(74);
  const Shape s{2, 3, 4, 5, 3}, twice{2, 3, 8, 10, 6};
  const Tensor dy = random_bf16(twice, rng, -100, 100, true);
  expect_bitwise([&](Device d) {
    Tensor dx = output(s, kBF, d);
    backend(d).upsample2_backward(on(d, dy), dx);
    return std::vector<Tensor>{dx};
  }, NaNs::AnyPayload, "upsample2_backward bfloat16 with NaN/inf");
}

TEST(CudaBf16, GatherForwardBitForBit) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(75);
  const Shape patch{16, 12, 8};
  for (int level = 0; level <= 3; ++level)
    for (int64_t B : {1, 3}) {
      const int64_t n = 37, C = 5;
      const Shape fs{B, C, (patch[0] + (1 << level) - 1) >> level, (patch[1] + (1 << level) - 1) >> level,
                     (patch[2] + (1 << level) - 1) >> level};
      std::vector<int32_t> cv;
      for (int64_t i = 0; i < B * n; ++i)
        for (int a = 0; a < 3; ++a) cv.push_back(int32_t(rng.randint(0, patch[size_t(a)])));
      const Tensor coords = Tensor::from_vector(cv, {B, n, 3}), feat = random_bf16(fs, rng, -1, 1, true);
      expect_bitwise([&](Device d) {
        Tensor out = output({B * n, C}, kBF, d);
        backend(d).gather_voxels(on(d, feat), on(d, coords), level, out);
        return std::vector<Tensor>{out};
      }, NaNs::SameBits, "gather_voxels bfloat16 level " + std::to_string(level) + shape_str(fs));
    }
}

// ------------------------------------------------------------------------------------------ convolution
// One convolution in bf16, all three directions, against the CPU's widened float32 result.
void check_conv_bf16(const Shape& xs, int64_t co, int k, const std::string& what, Rng& rng) {
  const Shape ws{co, xs[1], k, k, k}, ys{xs[0], co, xs[2], xs[3], xs[4]};
  const Tensor x = random(xs, kBF, rng), w = random(ws, kBF, rng), b = random({co}, kBF, rng),
               dy = random(ys, kBF, rng);
  auto run = [&](Device d) {
    Backend& be = backend(d);
    Conv3dArgs a;
    a.pad = k / 2;
    Tensor y = output(ys, kBF, d), y0 = output(ys, kBF, d), dx = output(xs, kBF, d), dw = output(ws, kBF, d);
    be.conv3d_forward(on(d, x), on(d, w), on(d, b), y, a);
    be.conv3d_forward(on(d, x), on(d, w), Tensor(), y0, a);
    be.conv3d_backward_data(on(d, dy), on(d, w), dx, a);
    be.conv3d_backward_filter(on(d, x), on(d, dy), dw, a);
    return std::vector<Tensor>{y, y0, dx, dw};
  };
  const std::vector<Tensor> want = run(Device::cpu()), got = run(gpu());
  const double k3 = double(k * k * k), fan = double(xs[1]) * k3, fan_dx = double(co) * k3,
               vox = double(xs[0] * xs[2] * xs[3] * xs[4]);
  const std::string id = what + " k" + std::to_string(k) + " " + name(kBF, xs) + " -> " + std::to_string(co);
  expect_close_bf16(want[0], got[0], sum_tol(fan, 0x1p-9 * max_abs(want[1])), id + ": forward with bias");
  expect_close_bf16(want[1], got[1], sum_tol(fan), id + ": forward");
  expect_close_bf16(want[2], got[2], sum_tol(fan_dx), id + ": backward-data");
  expect_close_bf16(want[3], got[3], sum_tol(vox), id + ": backward-filter");
}

TEST(CudaBf16, Conv3dSmallShapes) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(76);
  struct Case {
    Shape x;
    int64_t co;
    int k;
  };
  for (const Case& c : std::vector<Case>{{{1, 1, 5, 4, 3}, 1, 3}, {{2, 3, 5, 6, 7}, 4, 3}, {{1, 2, 9, 8, 3}, 5, 3},
                                         {{2, 16, 12, 10, 6}, 8, 1}, {{2, 8, 16, 16, 8}, 16, 3},
                                         {{1, 5, 1, 1, 1}, 3, 3}})
    check_conv_bf16(c.x, c.co, c.k, "small", rng);
}

// A few of the paper's convolution shapes (base 32, patch 128x128x32, level l: 32 * 2^l channels at
// (128, 128, 32) / 2^l; the full list is in test_conv3d.cpp) at batch 1: the first conv, ResBlock convs at
// three depths, a down and an up 1x1x1, the deepest projection and both restoration convs. In the CPU
// self-test the volumes shrink as in test_conv3d.cpp.
TEST(CudaBf16, Conv3dPaperShapes) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(77);
  struct PaperConv {
    int64_t ci, co;
    int k, level;
    const char* what;
  };
  const std::vector<PaperConv> convs = {
      {1, 32, 3, 0, "first_conv"},   {64, 64, 3, 1, "ResBlock l1"},     {256, 256, 3, 3, "ResBlock l3"},
      {512, 512, 3, 4, "ResBlock bottom"}, {32, 64, 1, 1, "down l0"}, {256, 128, 1, 3, "up l2"},
      {512, 32, 1, 4, "projection l4"}, {32, 16, 3, 0, "restoration conv0"}, {16, 1, 1, 0, "restoration conv3"}};
  for (const PaperConv& c : convs) {
    const int64_t shrink_xy = selftest() ? 4 : 1, shrink_z = selftest() ? 2 : 1;
    const int64_t X = std::max<int64_t>(1, (128 >> c.level) / shrink_xy);
    const int64_t Z = std::max<int64_t>(1, (32 >> c.level) / shrink_z);
    check_conv_bf16({1, c.ci, X, X, Z}, c.co, c.k, c.what, rng);
  }
}

// The conv tolerance itself, on the CPU alone (no GPU needed; runs in the self-test too): the same bf16
// inputs convolved with float64 accumulation and rounded to bf16 stand in for an accumulation in another
// order, and must pass; a 3% scale error and a forgotten bias must fail. Shapes up to the largest fan of
// the paper's network (512 channels, 3x3x3: 13,824 products per output).
TEST(CudaBf16, ConvToleranceAcceptsAnotherSummationOrderRejectsErrors) {
  Rng rng(81);
  struct Case {
    Shape x;
    int64_t co;
    int k;
  };
  Backend& cpu = backend(Device::cpu());
  for (const Case& c : std::vector<Case>{{{1, 512, 4, 4, 2}, 512, 3}, {{2, 16, 12, 10, 6}, 8, 1},
                                         {{1, 32, 16, 16, 4}, 16, 3}}) {
    const Shape ws{c.co, c.x[1], c.k, c.k, c.k}, ys{c.x[0], c.co, c.x[2], c.x[3], c.x[4]};
    const Tensor x = random(c.x, kBF, rng), w = random(ws, kBF, rng), b = random({c.co}, kBF, rng);
    Conv3dArgs a;
    a.pad = c.k / 2;
    Tensor y = output(ys, kBF, Device::cpu()), y0 = output(ys, kBF, Device::cpu());
    cpu.conv3d_forward(x, w, b, y, a);
    cpu.conv3d_forward(x, w, Tensor(), y0, a);
    Tensor y64 = output(ys, DType::F64, Device::cpu());
    cpu.conv3d_forward(x.to(DType::F64), w.to(DType::F64), b.to(DType::F64), y64, a);
    const Tensor other_order = y64.to(kBF);
    Tensor scaled = output(ys, kBF, Device::cpu());
    cpu.axpby(1.03, other_order, 0.0, other_order, scaled);
    const Tol tl = sum_tol(double(c.x[1] * c.k * c.k * c.k), 0x1p-9 * max_abs(y0));
    const std::string id = name(kBF, c.x) + " k" + std::to_string(c.k);
    EXPECT_TRUE(close(y, other_order, tl)) << id;
    EXPECT_TRUE(rel_l2_at_most(y, other_order, 1e-2)) << id;
    EXPECT_FALSE(close(y, scaled, tl)) << id << ": a 3% error passed";
    EXPECT_FALSE(close(y, y0, tl)) << id << ": a missing bias passed";
  }
}

// --deterministic with bf16: two runs of each direction give the same bits (cuDNN's deterministic
// algorithms only; on the CPU stand-in this holds trivially).
TEST(CudaBf16, Conv3dDeterministicModeRepeatsBitForBit) {
  HDSSL_REQUIRE_CUDA();
  struct DeterministicMode {  // on for this test, off again after it whatever happens
    DeterministicMode() { set_deterministic(true); }
    ~DeterministicMode() { set_deterministic(false); }
  } mode;
  Rng rng(78);
  const Shape xs{2, 16, 12, 10, 8}, ws{24, 16, 3, 3, 3}, ys{2, 24, 12, 10, 8};
  const Tensor x = random(xs, kBF, rng).to(gpu()), w = random(ws, kBF, rng).to(gpu()),
               dy = random(ys, kBF, rng).to(gpu());
  auto run = [&](Device) {
    Backend& be = backend(gpu());
    Conv3dArgs a;
    a.pad = 1;
    Tensor y = output(ys, kBF, gpu()), dx = output(xs, kBF, gpu()), dw = output(ws, kBF, gpu());
    be.conv3d_forward(x, w, Tensor(), y, a);
    be.conv3d_backward_data(dy, w, dx, a);
    be.conv3d_backward_filter(x, dy, dw, a);
    return std::vector<Tensor>{y, dx, dw};
  };
  const std::vector<Tensor> first = run(gpu()), second = run(gpu());
  for (size_t k = 0; k < first.size(); ++k)
    EXPECT_TRUE(same_bits(first[k], second[k], NaNs::SameBits)) << "deterministic bf16 conv, output " << k;
}

// ------------------------------------------------------------------------------------------ GEMM
TEST(CudaBf16, MatmulAllTransposesAlphaBeta) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(79);
  struct Mnk {
    int64_t m, n, k;
  };
  for (Mnk s : std::vector<Mnk>{{1, 1, 1}, {3, 5, 7}, {17, 1, 33}, {160, 160, 1025}, {1024, 128, 160}})
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (double beta : {0.0, 0.5}) {
          const Tensor a = random(ta ? Shape{s.k, s.m} : Shape{s.m, s.k}, kBF, rng);
          const Tensor b = random(tb ? Shape{s.n, s.k} : Shape{s.k, s.n}, kBF, rng);
          const Tensor c0 = random({s.m, s.n}, kBF, rng);
          auto run = [&](Device d) {
            Tensor out = beta == 0.0 ? output({s.m, s.n}, kBF, d) : on(d, c0);  // beta 0 never reads out (NaN)
            backend(d).matmul(on(d, a), on(d, b), out, ta, tb, 1.5, beta);
            return out;
          };
          const Tensor want = run(Device::cpu()), got = run(gpu());
          // alpha 1.5 scales the sum of K products; beta C adds one value in [-0.5, 0.5)
          expect_close_bf16(want, got, sum_tol(1.5 * 1.5 * double(s.k)),
                            "matmul bfloat16 " + std::to_string(s.m) + "x" + std::to_string(s.n) + "x" +
                                std::to_string(s.k) + (ta ? " A^T" : "") + (tb ? " B^T" : "") + " beta " +
                                std::to_string(beta));
        }
}

// The bf16 GEMM keeps its split-K reductions in float32: the handle's math mode carries
// CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION with TF32 off and on (cuda/context.cpp), so C is rounded
// to bf16 once, as the CPU's widened GEMM does. (Which split cuBLAS picks is its own business, so a
// numerical test could not be sure to catch partial sums rounded to bf16; the mode itself can be checked.)
TEST(CudaBf16, GemmReductionsStayInFloat32) {
  HDSSL_REQUIRE_REAL_CUDA();
  struct Tf32Off {  // off again after the test whatever happens
    ~Tf32Off() { cuda::set_allow_tf32(false); }
  } restore;
  for (bool tf32 : {true, false}) {
    cuda::set_allow_tf32(tf32);
    cublasMath_t mode = CUBLAS_DEFAULT_MATH;
    ASSERT_EQ(cublasGetMathMode(cuda::ctx().cublas, &mode), CUBLAS_STATUS_SUCCESS);
    EXPECT_TRUE(int(mode) & int(CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)) << "tf32 " << tf32;
    EXPECT_EQ(int(mode) & ~int(CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION),
              int(tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH))
        << "tf32 " << tf32;
  }
}

// ------------------------------------------------------------------------------------------ native, really
// The dispatch's widening allocates float32 twins of the bf16 tensors through the caching allocator; a
// primitive the CUDA backend runs on bf16 itself allocates none (a convolution at most its workspace, its
// algorithm being cached by the first call). sigmoid_forward, widened, is the control that the count sees
// widening at all.
TEST(CudaBf16, NativePrimitivesMakeNoFloat32Copies) {
  HDSSL_REQUIRE_REAL_CUDA();
  Rng rng(80);
  const Shape s{2, 3, 4, 6, 8}, half{2, 3, 2, 3, 4}, twice{2, 3, 8, 12, 16}, box{2, 3, 3, 5, 7};
  const Device g = gpu();
  const Tensor x = random(s, kBF, rng).to(g), y = random(s, kBF, rng).to(g), dh = random(half, kBF, rng).to(g);
  const Tensor d2 = random(twice, kBF, rng).to(g), db = random(box, kBF, rng).to(g);
  Tensor out = output(s, kBF, g), oh = output(half, kBF, g), idx = output(half, DType::I32, g);
  Tensor o2 = output(twice, kBF, g), ob = output(box, kBF, g);
  const Tensor m = random({40, 24}, kBF, rng).to(g), v = random({24}, kBF, rng).to(g),
               mb = random({24, 16}, kBF, rng).to(g);
  Tensor mo = output({40, 24}, kBF, g), mm = output({40, 16}, kBF, g);
  const Tensor coords = Tensor::from_vector(std::vector<int32_t>{0, 1, 2, 3, 5, 7, 1, 1, 1, 2, 0, 4}, {2, 2, 3}).to(g);
  Tensor go = output({4, 3}, kBF, g);
  const Tensor w = random({5, 3, 3, 3, 3}, kBF, rng).to(g), bias = random({5}, kBF, rng).to(g);
  const Tensor cdy = random({2, 5, 4, 6, 8}, kBF, rng).to(g);
  Tensor cy = output({2, 5, 4, 6, 8}, kBF, g), cdx = output(s, kBF, g), cdw = output({5, 3, 3, 3, 3}, kBF, g);
  const int64_t off[3] = {1, 0, 1};
  Backend& b = backend(g);
  Conv3dArgs ca;
  ca.pad = 1;
  auto allocations = [](const std::function<void()>& call) {
    const int64_t before = cuda::allocator_stats().num_allocations;
    call();
    return cuda::allocator_stats().num_allocations - before;
  };
  EXPECT_EQ(allocations([&] { b.axpby(0.5, x, 2.0, y, out); }), 0) << "axpby";
  EXPECT_EQ(allocations([&] { b.mul(x, y, out); }), 0) << "mul";
  EXPECT_EQ(allocations([&] { b.relu_forward(x, out); }), 0) << "relu_forward";
  EXPECT_EQ(allocations([&] { b.relu_backward(x, y, out); }), 0) << "relu_backward";
  EXPECT_EQ(allocations([&] { b.add_row_vector(m, v, mo); }), 0) << "add_row_vector";
  EXPECT_EQ(allocations([&] { b.maxpool2_forward(x, oh, idx); }), 0) << "maxpool2_forward";
  EXPECT_EQ(allocations([&] { b.maxpool2_backward(dh, idx, out); }), 0) << "maxpool2_backward";
  EXPECT_EQ(allocations([&] { b.upsample2_forward(x, o2); }), 0) << "upsample2_forward";
  EXPECT_EQ(allocations([&] { b.upsample2_backward(d2, out); }), 0) << "upsample2_backward";
  EXPECT_EQ(allocations([&] { b.crop_forward(x, ob, off); }), 0) << "crop_forward";
  EXPECT_EQ(allocations([&] { b.crop_backward(db, out, off); }), 0) << "crop_backward";
  EXPECT_EQ(allocations([&] { b.gather_voxels(x, coords, 0, go); }), 0) << "gather_voxels";
  EXPECT_EQ(allocations([&] { b.matmul(m, mb, mm, false, false, 1.0, 0.0); }), 0) << "matmul";
  b.conv3d_forward(x, w, bias, cy, ca);  // the first call of each direction chooses and caches the algorithm
  b.conv3d_backward_data(cdy, w, cdx, ca);
  b.conv3d_backward_filter(x, cdy, cdw, ca);
  EXPECT_LE(allocations([&] { b.conv3d_forward(x, w, bias, cy, ca); }), 1) << "conv3d_forward (workspace only)";
  EXPECT_LE(allocations([&] { b.conv3d_backward_data(cdy, w, cdx, ca); }), 1) << "conv3d_backward_data";
  EXPECT_LE(allocations([&] { b.conv3d_backward_filter(x, cdy, cdw, ca); }), 1) << "conv3d_backward_filter";
  EXPECT_GT(allocations([&] { b.sigmoid_forward(x, out); }), 0) << "sigmoid_forward is widened: the control";
}

}  // namespace
}  // namespace hdssl::test
