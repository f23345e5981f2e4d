// The labeled patch sampler: foreground lists once, then seeded draws per batch.
#include "eval/patches.h"

#include <algorithm>
#include <cmath>

#include "engine/check.h"
#include "engine/random.h"

namespace hdssl::eval {

PatchSampler::PatchSampler(std::vector<const data::Volume*> images, std::vector<const data::Volume*> labels,
                           PatchSamplerConfig cfg)
    : images_(std::move(images)), labels_(std::move(labels)), cfg_(cfg) {
  HDSSL_CHECK(!images_.empty() && images_.size() == labels_.size()) << "PatchSampler: need matching, non-empty case lists";
  for (size_t i = 0; i < images_.size(); ++i) {
    HDSSL_CHECK(images_[i]->dims == labels_[i]->dims) << "PatchSampler: image and labels of case " << i << " differ in dims";
    std::vector<std::vector<int64_t>> per(static_cast<size_t>(cfg_.classes));
    const std::vector<float>& l = labels_[i]->data;
    for (size_t v = 0; v < l.size(); ++v) {
      int c = int(std::lround(l[v]));
      if (c >= 1 && c <= cfg_.classes) per[size_t(c - 1)].push_back(int64_t(v));
    }
    Rng rng(cfg_.seed, 0x5eed0000 + i);
    for (auto& list : per) {
      if (int64_t(list.size()) <= cfg_.max_voxels_per_class) continue;
      for (int64_t j = 0; j < cfg_.max_voxels_per_class; ++j)  // partial Fisher-Yates
        std::swap(list[size_t(j)], list[size_t(rng.randint(j, int64_t(list.size())))]);
      list.resize(size_t(cfg_.max_voxels_per_class));
    }
    fg_.push_back(std::move(per));
  }
}

void PatchSampler::extract(int i, data::Dims3 s, float* img, float* tgt) const {
  const data::Volume& im = *images_[size_t(i)];
  const data::Volume& lb = *labels_[size_t(i)];
  const data::Dims3 p = cfg_.patch, d = im.dims;
  const int64_t pn = p[0] * p[1] * p[2];
  std::fill(img, img + pn, 0.f);
  std::fill(tgt, tgt + pn * cfg_.classes, 0.f);
  for (int64_t x = 0; x < p[0]; ++x) {
    const int64_t vx = s[0] + x;
    if (vx < 0 || vx >= d[0]) continue;
    for (int64_t y = 0; y < p[1]; ++y) {
      const int64_t vy = s[1] + y;
      if (vy < 0 || vy >= d[1]) continue;
      for (int64_t z = 0; z < p[2]; ++z) {
        const int64_t vz = s[2] + z;
        if (vz < 0 || vz >= d[2]) continue;
        const int64_t o = (x * p[1] + y) * p[2] + z, v = im.index(vx, vy, vz);
        img[o] = im.data[size_t(v)];
        int c = int(std::lround(lb.data[size_t(v)]));
        if (c >= 1 && c <= cfg_.classes) tgt[(c - 1) * pn + o] = 1.f;
      }
    }
  }
}

PatchBatch PatchSampler::batch(uint64_t k, int B) const {
  const data::Dims3 p = cfg_.patch;
  const int64_t pn = p[0] * p[1] * p[2], K = cfg_.classes;
  std::vector<float> img(size_t(B * pn)), tgt(size_t(B * K * pn));
  PatchBatch out;
  for (int b = 0; b < B; ++b) {
    Rng rng = Rng(cfg_.seed, 0xba7c4).split(k).split(uint64_t(b));
    const int i = int(rng.randint(0, int64_t(images_.size())));
    const data::Dims3 d = images_[size_t(i)]->dims;
    std::vector<int> present;
    for (int c = 0; c < K; ++c)
      if (!fg_[size_t(i)][size_t(c)].empty()) present.push_back(c);
    const bool fg = rng.uniform() < cfg_.fg_prob && !present.empty();
    data::Dims3 s;
    if (fg) {
      const auto& list = fg_[size_t(i)][size_t(present[size_t(rng.randint(0, int64_t(present.size())))])];
      const int64_t v = list[size_t(rng.randint(0, int64_t(list.size())))];
      const int64_t c[3] = {v / (d[1] * d[2]), (v / d[2]) % d[1], v % d[2]};
      for (int a = 0; a < 3; ++a) {
        const int64_t lo = std::min<int64_t>(0, d[a] - p[a]), hi = std::max<int64_t>(0, d[a] - p[a]);
        s[a] = std::clamp<int64_t>(c[a] - p[a] / 2, lo, hi);
      }
    } else {
      for (int a = 0; a < 3; ++a) {
        const int64_t lo = std::min<int64_t>(0, d[a] - p[a]), hi = std::max<int64_t>(0, d[a] - p[a]);
        s[a] = rng.randint(lo, hi + 1);
      }
    }
    extract(i, s, img.data() + b * pn, tgt.data() + b * K * pn);
    out.cases.push_back(i);
    out.starts.push_back(s);
    out.foreground.push_back(fg);
  }
  out.image = Tensor::from_vector(img, {B, 1, p[0], p[1], p[2]});
  out.target = Tensor::from_vector(tgt, {B, K, p[0], p[1], p[2]});
  return out;
}

}  // namespace hdssl::eval
