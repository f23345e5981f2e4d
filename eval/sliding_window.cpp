// Sliding window: enumerate windows, batch them through the forward, average the overlaps.
#include "eval/sliding_window.h"

#include <algorithm>
#include <cmath>

#include "engine/check.h"

namespace hdssl::eval {

std::vector<int64_t> window_starts(int64_t dim, int64_t patch, double overlap) {
  HDSSL_CHECK(dim > 0 && patch > 0 && overlap >= 0 && overlap < 1) << "window_starts(" << dim << ", " << patch << ")";
  int64_t p = std::min(patch, dim);
  if (p == dim) return {0};
  double target_step = std::max(1.0, double(p) * (1.0 - overlap));
  int64_t n = int64_t(std::ceil(double(dim - p) / target_step)) + 1;
  double step = double(dim - p) / double(n - 1);
  std::vector<int64_t> s;
  for (int64_t i = 0; i < n; ++i) s.push_back(int64_t(std::llround(step * double(i))));
  return s;
}

Tensor sliding_window(const data::Volume& image, const PatchForward& forward, const SlidingWindowOptions& o) {
  const data::Dims3 d = image.dims;
  data::Dims3 p;
  std::vector<int64_t> starts[3];
  for (int a = 0; a < 3; ++a) {
    p[a] = std::min(o.patch[a], d[a]);
    starts[a] = window_starts(d[a], o.patch[a], o.overlap);
  }
  std::vector<data::Dims3> windows;
  for (int64_t x : starts[0])
    for (int64_t y : starts[1])
      for (int64_t z : starts[2]) windows.push_back({x, y, z});

  const int64_t pn = p[0] * p[1] * p[2], vn = image.numel();
  std::vector<float> acc;      // [K, X, Y, Z], sized at the first output
  std::vector<float> count(size_t(vn), 0.f);
  int64_t K = -1;
  const size_t B = size_t(std::max(1, o.batch));
  for (size_t w0 = 0; w0 < windows.size(); w0 += B) {
    const size_t nb = std::min(B, windows.size() - w0);
    std::vector<float> in(nb * size_t(pn));
    for (size_t b = 0; b < nb; ++b) {
      const data::Dims3 s = windows[w0 + b];
      float* dst = in.data() + b * size_t(pn);
      for (int64_t x = 0; x < p[0]; ++x)
        for (int64_t y = 0; y < p[1]; ++y)
          for (int64_t z = 0; z < p[2]; ++z) *dst++ = image.at(s[0] + x, s[1] + y, s[2] + z);
    }
    Tensor out = forward(Tensor::from_vector(in, {int64_t(nb), 1, p[0], p[1], p[2]}));
    out = out.to(Device::cpu()).to(DType::F32);
    HDSSL_CHECK(out.dim() == 5 && out.size(0) == int64_t(nb) && out.size(2) == p[0] && out.size(3) == p[1] &&
                out.size(4) == p[2])
        << "sliding window: forward returned " << out.describe() << " for " << nb << " patches of "
        << p[0] << "x" << p[1] << "x" << p[2];
    if (K < 0) {
      K = out.size(1);
      acc.assign(size_t(K * vn), 0.f);
    }
    HDSSL_CHECK(out.size(1) == K) << "sliding window: channel count changed";
    const std::vector<float> v = out.to_vector<float>();
    for (size_t b = 0; b < nb; ++b) {
      const data::Dims3 s = windows[w0 + b];
      for (int64_t k = 0; k < K; ++k) {
        const float* src = v.data() + (b * size_t(K) + size_t(k)) * size_t(pn);
        float* a = acc.data() + size_t(k * vn);
        for (int64_t x = 0; x < p[0]; ++x)
          for (int64_t y = 0; y < p[1]; ++y)
            for (int64_t z = 0; z < p[2]; ++z) a[image.index(s[0] + x, s[1] + y, s[2] + z)] += *src++;
      }
      for (int64_t x = 0; x < p[0]; ++x)
        for (int64_t y = 0; y < p[1]; ++y)
          for (int64_t z = 0; z < p[2]; ++z) count[size_t(image.index(s[0] + x, s[1] + y, s[2] + z))] += 1.f;
    }
  }
  for (int64_t k = 0; k < K; ++k)
    for (int64_t i = 0; i < vn; ++i) acc[size_t(k * vn + i)] /= count[size_t(i)];
  return Tensor::from_vector(acc, {K, d[0], d[1], d[2]});
}

data::Volume labels_from_probabilities(const Tensor& probs, const data::Volume& like, double threshold) {
  HDSSL_CHECK(probs.dim() == 4 && probs.size(1) == like.dims[0] && probs.size(2) == like.dims[1] &&
              probs.size(3) == like.dims[2])
      << "labels_from_probabilities: " << probs.describe() << " does not match the volume";
  const std::vector<float> p = probs.to(Device::cpu()).to(DType::F32).to_vector<float>();
  const int64_t K = probs.size(0), n = like.numel();
  data::Volume out = like;
  for (int64_t i = 0; i < n; ++i) {
    int best = 0;
    float best_p = float(threshold);
    for (int64_t k = 0; k < K; ++k) {
      float v = p[size_t(k * n + i)];
      if (v > best_p) {
        best_p = v;
        best = int(k + 1);
      }
    }
    out.data[size_t(i)] = float(best);
  }
  return out;
}

}  // namespace hdssl::eval
