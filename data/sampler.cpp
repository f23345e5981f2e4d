// Pair sampler. The anchor is found by rejection sampling (body voxels are a large fraction of a volume
// cropped to the body), with an exact fallback that counts the mask when rejection keeps failing.
// Positive pairs come from a list of the overlap's body voxels and a partial Fisher-Yates shuffle.
#include "data/sampler.h"

#include <algorithm>
#include <cstring>

namespace hdssl::data {

void extract_patch(const Volume& v, Dims3 s, Dims3 p, float* out) {
  for (int64_t x = 0; x < p[0]; ++x)
    for (int64_t y = 0; y < p[1]; ++y)
      std::memcpy(out + (x * p[1] + y) * p[2], &v.data[size_t(v.index(s[0] + x, s[1] + y, s[2]))], size_t(p[2]) * sizeof(float));
}

PairSample sample_pair(const PreprocessedVolume& vol, Dims3 patch, int n, Rng& rng) {
  const Volume& img = vol.image;
  const Mask& body = vol.body;
  for (int a = 0; a < 3; ++a)
    if (img.dims[size_t(a)] < patch[size_t(a)])
      throw DataError(vol.source + ": preprocessed volume is smaller than the patch in axis " + std::to_string(a));
  PairSample s;
  const int64_t N = img.numel();
  int64_t anchor = -1;
  for (int t = 0; t < 1000 && anchor < 0; ++t) {
    int64_t k = rng.randint(0, N);
    if (body.data[size_t(k)]) anchor = k;
  }
  if (anchor < 0) {  // exact: the r-th body voxel
    int64_t count = 0;
    for (uint8_t b : body.data) count += b;
    if (count == 0) anchor = rng.randint(0, N);
    else {
      int64_t r = rng.randint(0, count);
      for (int64_t k = 0; k < N; ++k)
        if (body.data[size_t(k)] && r-- == 0) { anchor = k; break; }
    }
  }
  s.anchor = {anchor / (img.dims[1] * img.dims[2]), (anchor / img.dims[2]) % img.dims[1], anchor % img.dims[2]};
  for (int a = 0; a < 3; ++a) {
    int64_t lo = std::max<int64_t>(0, s.anchor[size_t(a)] - patch[size_t(a)] + 1);
    int64_t hi = std::min<int64_t>(s.anchor[size_t(a)], img.dims[size_t(a)] - patch[size_t(a)]);
    s.start_a[size_t(a)] = rng.randint(lo, hi + 1);
    s.start_b[size_t(a)] = rng.randint(lo, hi + 1);
  }
  // Body voxels in the overlap, as volume indices.
  int64_t olo[3], ohi[3];
  for (int a = 0; a < 3; ++a) {
    olo[a] = std::max(s.start_a[size_t(a)], s.start_b[size_t(a)]);
    ohi[a] = std::min(s.start_a[size_t(a)], s.start_b[size_t(a)]) + patch[size_t(a)];
  }
  std::vector<int64_t> cand;
  for (int64_t x = olo[0]; x < ohi[0]; ++x)
    for (int64_t y = olo[1]; y < ohi[1]; ++y) {
      int64_t base = (x * img.dims[1] + y) * img.dims[2];
      for (int64_t z = olo[2]; z < ohi[2]; ++z)
        if (body.data[size_t(base + z)]) cand.push_back(base + z);
    }
  if (cand.empty()) cand.push_back(anchor);  // only when the mask was empty: the anchor is in both boxes
  s.overlap_body = int64_t(cand.size());
  std::vector<int64_t> chosen;
  chosen.reserve(size_t(n));
  const int64_t m = int64_t(cand.size());
  const int64_t take = std::min<int64_t>(n, m);
  for (int64_t i = 0; i < take; ++i) {  // partial Fisher-Yates: without replacement
    int64_t j = rng.randint(i, m);
    std::swap(cand[size_t(i)], cand[size_t(j)]);
    chosen.push_back(cand[size_t(i)]);
  }
  for (int64_t i = take; i < n; ++i) chosen.push_back(cand[size_t(rng.randint(0, m))]);  // with replacement
  s.coords_a.resize(size_t(n));
  s.coords_b.resize(size_t(n));
  for (int i = 0; i < n; ++i) {
    int64_t k = chosen[size_t(i)];
    int64_t v[3] = {k / (img.dims[1] * img.dims[2]), (k / img.dims[2]) % img.dims[1], k % img.dims[2]};
    for (int a = 0; a < 3; ++a) {
      s.coords_a[size_t(i)][size_t(a)] = int32_t(v[a] - s.start_a[size_t(a)]);
      s.coords_b[size_t(i)][size_t(a)] = int32_t(v[a] - s.start_b[size_t(a)]);
    }
  }
  return s;
}

}  // namespace hdssl::data
