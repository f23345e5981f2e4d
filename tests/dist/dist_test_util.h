// Helpers shared by the tests/dist suites: deterministic tensors, host copies, and a closeness check.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/random.h"
#include "engine/tensor.h"

namespace hdssl::test {

inline Tensor random_tensor(const Shape& shape, Rng rng, DType t = DType::F64, double lo = -1.0, double hi = 1.0) {
  std::vector<double> v(size_t(numel(shape)));
  for (double& x : v) x = rng.uniform(lo, hi);
  return Tensor::from_vector(v, shape).to(t);
}

inline std::vector<double> host_doubles(const Tensor& t) {
  if (!t.defined()) return {};
  return t.to(Device::cpu()).to(DType::F64).to_vector<double>();
}

// Rows [begin, end) of a host vector that holds a tensor of `row_size` elements per row.
inline std::vector<double> rows(const std::vector<double>& v, int64_t row_size, int64_t begin, int64_t end) {
  return std::vector<double>(v.begin() + begin * row_size, v.begin() + end * row_size);
}

// max |got - want| <= rel * max(1, max |want|)
inline void expect_close(const std::vector<double>& got, const std::vector<double>& want, double rel,
                         const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double diff = 0, mag = 1;
  for (size_t i = 0; i < got.size(); ++i) {
    diff = std::max(diff, std::fabs(got[i] - want[i]));
    mag = std::max(mag, std::fabs(want[i]));
  }
  EXPECT_LE(diff, rel * mag) << what << ": max difference " << diff << ", max magnitude " << mag;
}

inline double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double d = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) d = std::max(d, std::fabs(a[i] - b[i]));
  return d;
}

}  // namespace hdssl::test
