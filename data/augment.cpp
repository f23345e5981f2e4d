// Augmentations. Tricks: the Bezier map is tabulated once per patch (4097 entries) so each voxel costs one
// table interpolation; the axial blur is two separable 1D passes.
#include "data/augment.h"

#include <algorithm>
#include <cmath>

namespace hdssl::data {

void shuffle_block(float* p, Dims3 d, const Box3& b, Rng& rng) {
  thread_local std::vector<int64_t> idx;  // reused: thousands of blocks per patch
  idx.clear();
  for (int64_t x = 0; x < b.size[0]; ++x)
    for (int64_t y = 0; y < b.size[1]; ++y)
      for (int64_t z = 0; z < b.size[2]; ++z)
        idx.push_back(((b.begin[0] + x) * d[1] + b.begin[1] + y) * d[2] + b.begin[2] + z);
  for (int64_t i = int64_t(idx.size()) - 1; i > 0; --i) {
    int64_t j = rng.randint(0, i + 1);
    std::swap(p[idx[size_t(i)]], p[idx[size_t(j)]]);
  }
}

std::vector<Box3> local_pixel_shuffle(float* p, Dims3 d, int blocks, int div, Rng& rng) {
  return local_pixel_shuffle(p, d, blocks, div, Dims3{1, 1, 1}, rng);
}

std::vector<Box3> local_pixel_shuffle(float* p, Dims3 d, int blocks, int div, Dims3 min_side, Rng& rng) {
  Box3 b;
  for (int a = 0; a < 3; ++a)
    b.size[size_t(a)] = std::min(d[size_t(a)], std::max<int64_t>({1, min_side[size_t(a)], d[size_t(a)] / div}));
  std::vector<Box3> out;
  out.reserve(size_t(blocks));
  for (int i = 0; i < blocks; ++i) {
    for (int a = 0; a < 3; ++a) b.begin[size_t(a)] = rng.randint(0, d[size_t(a)] - b.size[size_t(a)] + 1);
    shuffle_block(p, d, b, rng);
    out.push_back(b);
  }
  return out;
}

BezierMap::BezierMap(std::array<double, 2> p1, std::array<double, 2> p2) {
  const int K = 1000;
  std::vector<double> xs(K), ys(K);
  for (int i = 0; i < K; ++i) {
    double t = double(i) / (K - 1), u = 1 - t;
    double b1 = 3 * u * u * t, b2 = 3 * u * t * t, b3 = t * t * t;
    xs[size_t(i)] = b1 * p1[0] + b2 * p2[0] + b3;
    ys[size_t(i)] = b1 * p1[1] + b2 * p2[1] + b3;
  }
  std::sort(xs.begin(), xs.end());
  std::sort(ys.begin(), ys.end());
  const int L = 4097;
  lut_.resize(L);
  size_t j = 0;
  for (int i = 0; i < L; ++i) {
    double v = double(i) / (L - 1);
    while (j + 2 < xs.size() && xs[j + 1] < v) ++j;  // xs[j] <= v <= xs[j+1] (np.interp)
    double x0 = xs[j], x1 = xs[j + 1];
    double w = x1 > x0 ? std::clamp((v - x0) / (x1 - x0), 0.0, 1.0) : 1.0;
    lut_[size_t(i)] = float(ys[j] + w * (ys[j + 1] - ys[j]));
  }
  lut_.front() = float(ys.front());  // exactly 0
  lut_.back() = float(ys.back());    // exactly 1
}

BezierMap BezierMap::random(Rng& rng) {
  std::array<double, 2> p1{rng.uniform(), rng.uniform()}, p2{rng.uniform(), rng.uniform()};
  return BezierMap(p1, p2);
}

float BezierMap::operator()(float v) const {
  float s = std::clamp(v, 0.f, 1.f) * float(lut_.size() - 1);
  size_t i = std::min(size_t(s), lut_.size() - 2);
  float w = s - float(i);
  return lut_[i] + w * (lut_[i + 1] - lut_[i]);
}

void BezierMap::apply(float* p, int64_t n) const {
  for (int64_t i = 0; i < n; ++i) p[i] = (*this)(p[i]);
}

std::vector<Box3> inpaint(float* p, Dims3 d, int max_boxes, double continue_p, Rng& rng) {
  std::vector<Box3> boxes;
  while (int(boxes.size()) < max_boxes && rng.bernoulli(continue_p)) {
    Box3 b;
    for (int a = 0; a < 3; ++a) {
      int64_t D = d[size_t(a)];
      int64_t lo = std::max<int64_t>(1, D / 10), hi = std::max<int64_t>(lo + 1, D / 5);
      int64_t side = std::min(rng.randint(lo, hi), D);
      int64_t margin = D - side >= 6 ? 3 : 0;  // tiny dims: no room for the 3-voxel margin
      b.size[size_t(a)] = side;
      b.begin[size_t(a)] = rng.randint(margin, D - side - margin + 1);
    }
    for (int64_t x = 0; x < b.size[0]; ++x)
      for (int64_t y = 0; y < b.size[1]; ++y) {
        float* row = p + ((b.begin[0] + x) * d[1] + b.begin[1] + y) * d[2] + b.begin[2];
        for (int64_t z = 0; z < b.size[2]; ++z) row[z] = rng.uniformf();
      }
    boxes.push_back(b);
  }
  return boxes;
}

void augment_local(float* p, Dims3 d, const LocalAugConfig& cfg, Rng& rng) {
  const int64_t n = d[0] * d[1] * d[2];
  // Each decision draws from its own stream so switching one augmentation off leaves the others unchanged.
  Rng r_shuffle = rng.split(1), r_bezier = rng.split(2), r_inpaint = rng.split(3);
  if (cfg.shuffle && r_shuffle.bernoulli(cfg.shuffle_p))
    local_pixel_shuffle(p, d, cfg.shuffle_blocks, cfg.shuffle_block_div, cfg.shuffle_block_min, r_shuffle);
  if (cfg.bezier && r_bezier.bernoulli(cfg.bezier_p)) BezierMap::random(r_bezier).apply(p, n);
  if (cfg.inpaint) inpaint(p, d, cfg.inpaint_max_boxes, cfg.inpaint_continue_p, r_inpaint);
}

namespace {
std::vector<float> gaussian_kernel(double sigma) {
  int r = std::max(1, int(std::ceil(3 * sigma)));
  std::vector<float> k(size_t(2 * r + 1));
  double s = 0;
  for (int i = -r; i <= r; ++i) s += (k[size_t(i + r)] = float(std::exp(-0.5 * i * i / (sigma * sigma))));
  for (float& v : k) v = float(v / s);
  return k;
}
}  // namespace

void blur_axial(float* p, Dims3 d, double sigma) {
  auto k = gaussian_kernel(sigma);
  const int64_t r = int64_t(k.size() / 2);
  const int64_t nx = d[0], ny = d[1], nz = d[2];
  std::vector<float> tmp(size_t(nx * ny * nz));
  // Along y (stride nz), into tmp.
  for (int64_t x = 0; x < nx; ++x)
    for (int64_t y = 0; y < ny; ++y) {
      float* dst = &tmp[size_t((x * ny + y) * nz)];
      std::fill(dst, dst + nz, 0.f);
      for (int64_t t = -r; t <= r; ++t) {
        int64_t yy = std::clamp<int64_t>(y + t, 0, ny - 1);
        const float* src = p + (x * ny + yy) * nz;
        float w = k[size_t(t + r)];
        for (int64_t z = 0; z < nz; ++z) dst[z] += w * src[z];
      }
    }
  // Along x (stride ny*nz), back into p.
  const int64_t plane = ny * nz;
  for (int64_t x = 0; x < nx; ++x) {
    float* dst = p + x * plane;
    std::fill(dst, dst + plane, 0.f);
    for (int64_t t = -r; t <= r; ++t) {
      int64_t xx = std::clamp<int64_t>(x + t, 0, nx - 1);
      const float* src = &tmp[size_t(xx * plane)];
      float w = k[size_t(t + r)];
      for (int64_t i = 0; i < plane; ++i) dst[i] += w * src[i];
    }
  }
}

namespace {
void blur_or_sharpen(float* p, Dims3 d, Rng& r_blur) {
  const int64_t n = d[0] * d[1] * d[2];
  if (r_blur.bernoulli(0.5)) {
    blur_axial(p, d, r_blur.uniform(0.25, 1.5));
  } else {  // unsharp masking: b1 + alpha * (b1 - blur(b1, 0.5))
    double s1 = r_blur.uniform(0.5, 1.0), alpha = r_blur.uniform(10, 30);
    blur_axial(p, d, s1);
    std::vector<float> b2(p, p + n);
    blur_axial(b2.data(), d, 0.5);
    for (int64_t i = 0; i < n; ++i) p[i] += float(alpha) * (p[i] - b2[size_t(i)]);
  }
}

void add_noise(float* p, int64_t n, double sigma_max, Rng& r_noise) {
  float sigma = float(r_noise.uniform(0, sigma_max));
  for (int64_t i = 0; i < n; i += 2) {  // Box-Muller: both normals of each pair of uniforms
    double u1 = std::max(r_noise.uniform(), 1e-300), u2 = r_noise.uniform();
    double r = std::sqrt(-2.0 * std::log(u1)), t = 6.283185307179586 * u2;
    p[i] += sigma * float(r * std::cos(t));
    if (i + 1 < n) p[i + 1] += sigma * float(r * std::sin(t));
  }
}
}  // namespace

// Blur, sharpening and the window are affine-equivariant, so they run on the [0, 1] data directly: a HU
// value h is (h - data_window_lo) / span there, and a noise of s HU is s / span.
void augment_vox2vec(float* p, Dims3 d, const Vox2vecAugConfig& cfg, Rng& rng) {
  const int64_t n = d[0] * d[1] * d[2];
  Rng r_window = rng.split(1), r_blur = rng.split(2), r_noise = rng.split(3);
  const double span = cfg.data_window_hi - cfg.data_window_lo;
  // Window [lo, hi] between (-1000, 300) and (-1350, 1000) HU, applied to data scaled from the data window.
  auto window = [&](bool random) {
    float slo = 0.f, shi = 1.f;
    if (random) {
      double lo = r_window.uniform(-1350, -1000), hi = r_window.uniform(300, 1000);
      slo = float((lo - cfg.data_window_lo) / span);
      shi = float((hi - cfg.data_window_lo) / span);
    }
    float inv = 1.f / (shi - slo);
    for (int64_t i = 0; i < n; ++i) p[i] = (std::clamp(p[i], slo, shi) - slo) * inv;
  };
  if (!cfg.program_order) {
    if (cfg.window && cfg.ct && r_window.bernoulli(cfg.window_p)) window(true);
    if (cfg.blur_sharpen && r_blur.bernoulli(cfg.blur_sharpen_p)) blur_or_sharpen(p, d, r_blur);
    if (cfg.noise && r_noise.bernoulli(cfg.noise_p)) add_noise(p, n, cfg.noise_sigma_max, r_noise);
    return;
  }
  if (cfg.blur_sharpen && r_blur.bernoulli(cfg.blur_sharpen_p)) blur_or_sharpen(p, d, r_blur);
  if (cfg.noise && r_noise.bernoulli(cfg.noise_p))
    add_noise(p, n, cfg.ct ? cfg.noise_sigma_max_hu / span : cfg.noise_sigma_max, r_noise);
  if (cfg.ct) window(cfg.window && r_window.bernoulli(cfg.window_p));  // clip last; the data window when no random one
}

}  // namespace hdssl::data
