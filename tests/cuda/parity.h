// Helpers of the CPU-vs-CUDA parity tests: skip without a device, random inputs, run one primitive on
// both backends, compare with a tolerance written next to each check.
//
// HDSSL_PARITY_SELFTEST=1 (ctest: cuda_tests_cpu_selftest) runs them CPU against CPU, to check the tests.
// HDSSL_REQUIRE_GPU=1 (set by scripts/device-check.sh) turns every "no CUDA device" skip into a failure,
// so a GPU machine whose CUDA set-up is broken can never end green with everything skipped.
//
// Pattern of a test:
//   HDSSL_REQUIRE_CUDA();
//   for (DType t : kFloatTypes) {
//     Tensor x = random({2, 3, 5}, t, rng);                      // inputs live on the CPU
//     auto run = [&](Device d) {                                 // the same code for both backends
//       Tensor y = output(x.shape(), t, d);                      // NaN-filled: unwritten elements show
//       backend(d).relu_forward(on(d, x), y);
//       return std::vector<Tensor>{y};
//     };
//     expect_parity(run, {tol(t, 0, 0)}, "relu_forward");   // CPU result vs CUDA result
//   }
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "cuda/backend.h"
#include "engine/backend.h"
#include "engine/random.h"
#include "engine/tensor.h"

namespace hdssl::test {

// HDSSL_PARITY_SELFTEST=1 runs every parity test with the CPU standing in for CUDA (CPU against CPU):
// checks the tests themselves (shapes, calls, tolerances) on a machine without a GPU.
inline bool selftest() {
  static const bool on = [] {
    const char* e = std::getenv("HDSSL_PARITY_SELFTEST");
    return e && std::string(e) == "1";
  }();
  return on;
}

// True when the CUDA backend is registered (init() is called once; a set-up failure is reported).
inline bool cuda_ready(std::string* why = nullptr) {
  if (selftest()) return true;
  static std::string reason;
  static const bool ok = [] {
    try {
      if (cuda::init()) return true;
      reason = "hdssl::cuda::init() found no CUDA device or driver (these tests run on the GPU machine: "
               "bash scripts/device-check.sh)";
    } catch (const std::exception& e) {
      reason = std::string("hdssl::cuda::init() failed: ") + e.what();
    }
    return false;
  }();
  if (why) *why = reason;
  return ok;
}

// HDSSL_REQUIRE_GPU=1: a missing CUDA device is a failure, not a skip.
inline bool gpu_required() {
  static const bool on = [] {
    const char* e = std::getenv("HDSSL_REQUIRE_GPU");
    return e && std::string(e) == "1";
  }();
  return on;
}

#define HDSSL_REQUIRE_CUDA()                                                                        \
  do {                                                                                              \
    std::string hdssl_why_;                                                                         \
    if (!::hdssl::test::cuda_ready(&hdssl_why_)) {                                                  \
      if (::hdssl::test::gpu_required())                                                            \
        FAIL() << "no CUDA device, and HDSSL_REQUIRE_GPU=1 makes that a failure: " << hdssl_why_;   \
      GTEST_SKIP() << "no CUDA device: " << hdssl_why_;                                             \
    }                                                                                               \
  } while (0)

inline const std::vector<DType> kFloatTypes = {DType::F32, DType::F64};

inline Device gpu() { return selftest() ? Device::cpu() : Device::cuda(0); }

// For tests of CUDA-only machinery (allocator, algorithm cache): skipped in the CPU self-test.
#define HDSSL_REQUIRE_REAL_CUDA()                                                          \
  do {                                                                                     \
    HDSSL_REQUIRE_CUDA();                                                                  \
    if (::hdssl::test::selftest()) GTEST_SKIP() << "CUDA-only machinery: not in the self-test"; \
  } while (0)

// Uniform random values in [lo, hi) on the CPU.
inline Tensor random(const Shape& s, DType t, Rng& rng, double lo = -1.0, double hi = 1.0) {
  std::vector<double> v(size_t(numel(s)));
  for (double& x : v) x = rng.uniform(lo, hi);
  return Tensor::from_vector(v, s).to(t);
}

// Integer tensor with values in [lo, hi).
inline Tensor random_int(const Shape& s, Rng& rng, int lo, int hi) {
  std::vector<int32_t> v(size_t(numel(s)));
  for (int32_t& x : v) x = int32_t(rng.randint(lo, hi));
  return Tensor::from_vector(v, s);
}

// The input as the backend on d sees it: a private copy (so in-place primitives never touch the
// shared CPU original) on that device.
inline Tensor on(Device d, const Tensor& t) {
  if (!t.defined()) return t;
  return d.is_cpu() ? t.clone() : t.to(d);
}

// A fresh output on d, filled with NaN (floats) or -7 (int32) so an element a kernel forgets stands out.
inline Tensor output(const Shape& s, DType t, Device d) {
  return Tensor::full(s, t == DType::I32 ? -7.0 : std::numeric_limits<double>::quiet_NaN(), t, d);
}

// |cuda - cpu| <= atol + rtol * |cpu| element by element (NaN never passes).
struct Tol {
  double atol = 0, rtol = 0;
};
// Tolerances by dtype: float32 values, float64 values.
inline Tol tol(DType t, double atol32, double rtol32, double atol64 = 1e-12, double rtol64 = 1e-10) {
  return t == DType::F64 ? Tol{atol64, rtol64} : Tol{atol32, rtol32};
}

inline std::vector<double> host_doubles(const Tensor& t) {
  Tensor c = t.to(Device::cpu());
  if (c.dtype() == DType::BF16) c = c.to(DType::F32);  // exact
  if (c.dtype() == DType::F64) return c.to_vector<double>();
  if (c.dtype() == DType::F32) {
    auto f = c.to_vector<float>();
    return std::vector<double>(f.begin(), f.end());
  }
  auto i = c.to_vector<int32_t>();
  return std::vector<double>(i.begin(), i.end());
}

inline ::testing::AssertionResult close(const Tensor& expected_cpu, const Tensor& got_cuda, Tol tl) {
  if (expected_cpu.shape() != got_cuda.shape() || expected_cpu.dtype() != got_cuda.dtype())
    return ::testing::AssertionFailure() << "shape/dtype: " << expected_cpu.describe() << " vs " << got_cuda.describe();
  const auto a = host_doubles(expected_cpu), b = host_doubles(got_cuda);
  double worst = 0;
  int64_t worst_i = -1, bad = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(a[i] - b[i]), lim = tl.atol + tl.rtol * std::fabs(a[i]);
    const bool ok = d <= lim || (std::isinf(a[i]) && a[i] == b[i]);
    if (!ok) ++bad;
    if (!ok && (worst_i < 0 || !(d <= worst))) {
      worst = d;
      worst_i = int64_t(i);
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " of " << a.size() << " elements differ; worst at flat index "
                                       << worst_i << ": cpu " << a[size_t(worst_i)] << " cuda " << b[size_t(worst_i)]
                                       << " (|diff| " << worst << ", atol " << tl.atol << ", rtol " << tl.rtol
                                       << ") in " << expected_cpu.describe();
}

// Runs f on the CPU and on CUDA and compares output k with tols[k] (the last tolerance repeats).
inline void expect_parity(const std::function<std::vector<Tensor>(Device)>& f, const std::vector<Tol>& tols,
                          const std::string& what) {
  const std::vector<Tensor> want = f(Device::cpu());
  const std::vector<Tensor> got = f(gpu());
  ASSERT_EQ(want.size(), got.size()) << what;
  for (size_t k = 0; k < want.size(); ++k) {
    const Tol tl = tols.empty() ? Tol{} : tols[std::min(k, tols.size() - 1)];
    EXPECT_TRUE(close(want[k], got[k], tl)) << what << ", output " << k;
  }
}

inline std::string name(DType t, const Shape& s) { return std::string(dtype_name(t)) + shape_str(s); }

}  // namespace hdssl::test
