// Sliding-window inference: window placement, exact equality with a whole-volume forward when the
// volume fits in one patch, overlap averaging, and the probabilities -> labels rule.
#include <gtest/gtest.h>

#include <cmath>

#include "eval/sliding_window.h"

using namespace hdssl;
using namespace hdssl::eval;

static data::Volume ramp(data::Dims3 d) {
  data::Volume v(d);
  for (size_t i = 0; i < v.data.size(); ++i) v.data[i] = float(std::sin(0.37 * double(i)));
  return v;
}

// A non-local forward: channel 0 = x + mean(patch), channel 1 = x * x. Splitting the volume into several
// windows would change channel 0, so equality proves a single whole-volume call.
static Tensor nonlocal(const Tensor& p) {
  std::vector<float> x = p.to_vector<float>();
  const int64_t B = p.size(0), n = p.numel() / B;
  std::vector<float> out(size_t(B * 2 * n));
  for (int64_t b = 0; b < B; ++b) {
    double m = 0;
    for (int64_t i = 0; i < n; ++i) m += x[size_t(b * n + i)];
    m /= double(n);
    for (int64_t i = 0; i < n; ++i) {
      float v = x[size_t(b * n + i)];
      out[size_t((b * 2 + 0) * n + i)] = v + float(m);
      out[size_t((b * 2 + 1) * n + i)] = v * v;
    }
  }
  return Tensor::from_vector(out, {B, 2, p.size(2), p.size(3), p.size(4)});
}

TEST(SlidingWindow, Starts) {
  EXPECT_EQ(window_starts(10, 4, 0.5), (std::vector<int64_t>{0, 2, 4, 6}));
  EXPECT_EQ(window_starts(11, 4, 0.5), (std::vector<int64_t>{0, 2, 4, 5, 7}));
  EXPECT_EQ(window_starts(4, 4, 0.5), (std::vector<int64_t>{0}));
  EXPECT_EQ(window_starts(3, 8, 0.5), (std::vector<int64_t>{0}));
  EXPECT_EQ(window_starts(5, 4, 0.5), (std::vector<int64_t>{0, 1}));
}

TEST(SlidingWindow, EqualsWholeVolumeForwardWhenItFitsInOnePatch) {
  for (data::Dims3 d : {data::Dims3{6, 5, 4}, data::Dims3{8, 8, 8}}) {
    data::Volume v = ramp(d);
    SlidingWindowOptions o;
    o.patch = {8, 8, 8};
    int calls = 0;
    Tensor got = sliding_window(v, [&](const Tensor& p) { ++calls; return nonlocal(p); }, o);
    Tensor direct = nonlocal(Tensor::from_vector(v.data, {1, 1, d[0], d[1], d[2]}));
    EXPECT_EQ(calls, 1);
    ASSERT_EQ(got.shape(), (Shape{2, d[0], d[1], d[2]}));
    EXPECT_EQ(got.to_vector<float>(), direct.to_vector<float>());
  }
}

TEST(SlidingWindow, PointwiseForwardIsReproducedOverManyWindowsAndBatches) {
  data::Volume v = ramp({9, 7, 5});
  auto sq = [](const Tensor& p) {
    std::vector<float> x = p.to_vector<float>();
    for (float& a : x) a = a * a;
    return Tensor::from_vector(x, p.shape());
  };
  for (int batch : {1, 3, 100}) {
    SlidingWindowOptions o;
    o.patch = {4, 4, 2};
    o.batch = batch;
    std::vector<float> got = sliding_window(v, sq, o).to_vector<float>();
    ASSERT_EQ(got.size(), v.data.size());
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], v.data[i] * v.data[i], 1e-6) << i;
  }
}

TEST(SlidingWindow, OverlapsAreAveraged) {
  // Length 6, patch 4: windows start at 0 and 2. The first returns 1 everywhere, the second 3.
  data::Volume v({6, 1, 1});
  int call = 0;
  auto f = [&](const Tensor& p) { return Tensor::full(p.shape(), call++ == 0 ? 1.0 : 3.0); };
  SlidingWindowOptions o;
  o.patch = {4, 1, 1};
  std::vector<float> got = sliding_window(v, f, o).to_vector<float>();
  EXPECT_EQ(got, (std::vector<float>{1, 1, 2, 2, 3, 3}));
}

TEST(SlidingWindow, LabelsFromProbabilities) {
  data::Volume like({4, 1, 1});
  // channel-major [K=2, 4 voxels]: (0.2,0.3) -> 0, (0.6,0.7) -> 2, (0.9,0.1) -> 1, (0.5,0.5) -> 0
  Tensor p = Tensor::from_vector(std::vector<float>{0.2f, 0.6f, 0.9f, 0.5f, 0.3f, 0.7f, 0.1f, 0.5f}, {2, 4, 1, 1});
  data::Volume l = labels_from_probabilities(p, like, 0.5);
  EXPECT_EQ(l.data, (std::vector<float>{0, 2, 1, 0}));
}
