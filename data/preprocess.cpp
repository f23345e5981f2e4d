// CT/MRI presets, crop to tissue, grow to the patch size, body mask, and the inverse mapping for labels.
#include "data/preprocess.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "data/resample.h"

namespace hdssl::data {

void PreprocessConfig::set_ct_window(const std::string& spec) {
  if (spec == "paper") {
    ct_clip_lo = kPaperCtWindow[0];
    ct_clip_hi = kPaperCtWindow[1];
    return;
  }
  if (spec == "program") {
    ct_clip_lo = kProgramCtWindow[0];
    ct_clip_hi = kProgramCtWindow[1];
    return;
  }
  double lo = 0, hi = 0;
  char end = 0;
  if (std::sscanf(spec.c_str(), "%lf,%lf%c", &lo, &hi, &end) != 2 || !std::isfinite(lo) || !std::isfinite(hi) ||
      lo >= hi)
    throw DataError("CT window '" + spec + "': expected paper, program or LO,HI in HU with LO < HI");
  ct_clip_lo = lo;
  ct_clip_hi = hi;
}

std::string PreprocessConfig::key() const {
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "v1 mod=%s sp=%.6g,%.6g,%.6g ct=%.6g,%.6g,%.6g mri=%.6g,%.6g,%.6g min=%lld,%lld,%lld body=%.6g",
                modality == Modality::CT ? "ct" : "mri", spacing[0], spacing[1], spacing[2], ct_clip_lo, ct_clip_hi,
                ct_crop_hu, mri_pct_lo, mri_pct_hi, mri_crop, (long long)min_size[0], (long long)min_size[1],
                (long long)min_size[2], body_threshold);
  return buf;
}

Volume crop_or_pad(const Volume& v, std::array<int64_t, 3> b, Dims3 d, float fill) {
  Volume out(d, fill);
  for (int64_t x = 0; x < d[0]; ++x) {
    int64_t sx = b[0] + x;
    if (sx < 0 || sx >= v.dims[0]) continue;
    for (int64_t y = 0; y < d[1]; ++y) {
      int64_t sy = b[1] + y;
      if (sy < 0 || sy >= v.dims[1]) continue;
      int64_t z0 = std::max<int64_t>(0, -b[2]), z1 = std::min<int64_t>(d[2], v.dims[2] - b[2]);
      if (z1 > z0)
        std::copy_n(&v.data[size_t(v.index(sx, sy, b[2] + z0))], z1 - z0, &out.data[size_t(out.index(x, y, z0))]);
    }
  }
  Mat44 t = identity44();
  for (int a = 0; a < 3; ++a) t[a][3] = double(b[size_t(a)]);
  out.affine = matmul44(v.affine, t);
  out.spacing = v.spacing;
  return out;
}

namespace {

// Percentile (in percent) of the values, from a deterministic subsample of at most ~2M voxels.
double percentile(const std::vector<float>& data, double pct) {
  size_t step = std::max<size_t>(1, data.size() / 2000000);
  std::vector<float> s;
  s.reserve(data.size() / step + 1);
  for (size_t i = 0; i < data.size(); i += step) s.push_back(data[i]);
  double pos = std::clamp(pct / 100.0, 0.0, 1.0) * double(s.size() - 1);
  size_t k = size_t(std::floor(pos));
  std::nth_element(s.begin(), s.begin() + long(k), s.end());
  double lo = s[k];
  if (k + 1 < s.size()) {
    double hi = *std::min_element(s.begin() + long(k) + 1, s.end());
    return lo + (pos - double(k)) * (hi - lo);
  }
  return lo;
}

// Smallest box holding voxels > thr, grown (centred) to at least min_size; negative begin = pad.
void crop_box(const Volume& v, float thr, Dims3 min_size, std::array<int64_t, 3>& begin, Dims3& dims) {
  int64_t lo[3] = {v.dims[0], v.dims[1], v.dims[2]}, hi[3] = {-1, -1, -1};
  for (int64_t x = 0; x < v.dims[0]; ++x)
    for (int64_t y = 0; y < v.dims[1]; ++y) {
      const float* row = &v.data[size_t(v.index(x, y, 0))];
      for (int64_t z = 0; z < v.dims[2]; ++z)
        if (row[z] > thr) {
          lo[0] = std::min(lo[0], x); hi[0] = std::max(hi[0], x);
          lo[1] = std::min(lo[1], y); hi[1] = std::max(hi[1], y);
          lo[2] = std::min(lo[2], z); hi[2] = std::max(hi[2], z);
        }
    }
  for (int a = 0; a < 3; ++a) {
    if (hi[a] < 0) { lo[a] = 0; hi[a] = v.dims[size_t(a)] - 1; }  // nothing above threshold: keep all
    int64_t size = hi[a] - lo[a] + 1, want = std::max(size, min_size[size_t(a)]);
    int64_t b = lo[a] - (want - size) / 2;
    int64_t D = v.dims[size_t(a)];
    if (want <= D) b = std::clamp<int64_t>(b, 0, D - want);
    else b = -(want - D) / 2;  // pad both sides
    begin[size_t(a)] = b;
    dims[size_t(a)] = want;
  }
}

}  // namespace

Mask body_mask(const Volume& v, double threshold) {
  Mask m;
  m.dims = v.dims;
  m.data.assign(size_t(v.numel()), 1);
  const int64_t nx = v.dims[0], ny = v.dims[1], nz = v.dims[2];
  std::vector<int64_t> stack;
  std::vector<uint8_t> outside(size_t(nx * ny));
  const float thr = float(threshold);
  for (int64_t z = 0; z < nz; ++z) {
    std::fill(outside.begin(), outside.end(), 0);
    auto air = [&](int64_t x, int64_t y) { return v.data[size_t((x * ny + y) * nz + z)] < thr; };
    auto push = [&](int64_t x, int64_t y) {
      int64_t k = x * ny + y;
      if (!outside[size_t(k)] && air(x, y)) { outside[size_t(k)] = 1; stack.push_back(k); }
    };
    for (int64_t x = 0; x < nx; ++x) { push(x, 0); push(x, ny - 1); }
    for (int64_t y = 0; y < ny; ++y) { push(0, y); push(nx - 1, y); }
    while (!stack.empty()) {
      int64_t k = stack.back();
      stack.pop_back();
      int64_t x = k / ny, y = k % ny;
      if (x > 0) push(x - 1, y);
      if (x + 1 < nx) push(x + 1, y);
      if (y > 0) push(x, y - 1);
      if (y + 1 < ny) push(x, y + 1);
    }
    for (int64_t k = 0; k < nx * ny; ++k)
      if (outside[size_t(k)]) m.data[size_t(k * nz + z)] = 0;
  }
  return m;
}

PreprocessedVolume preprocess(const NiftiImage& img, const PreprocessConfig& cfg) {
  PreprocessedVolume out;
  out.source = img.info.path;
  PreprocessRecord& rec = out.record;
  rec.original = img.info.geom;
  Volume ras = to_ras(img.volume, &rec.orient);
  rec.ras_dims = ras.dims;
  rec.ras_spacing = ras.spacing;
  rec.spacing = cfg.spacing;
  Volume v = resample_to_spacing(ras, cfg.spacing, Interp::Linear);
  ras = Volume();
  rec.resampled_dims = v.dims;

  float crop_thr;
  if (cfg.modality == Modality::CT) {
    crop_thr = float(cfg.ct_crop_hu);
  } else {
    double lo = percentile(v.data, cfg.mri_pct_lo), hi = percentile(v.data, cfg.mri_pct_hi);
    if (!(hi > lo)) hi = lo + 1;
    const float flo = float(lo), inv = float(1.0 / (hi - lo));
    for (float& x : v.data) x = (std::clamp(x, flo, float(hi)) - flo) * inv;
    crop_thr = float(cfg.mri_crop);
  }
  Dims3 dims;
  crop_box(v, crop_thr, cfg.min_size, rec.crop_begin, dims);
  float pad = cfg.modality == Modality::CT ? float(cfg.ct_clip_lo) : 0.f;
  v = crop_or_pad(v, rec.crop_begin, dims, pad);
  if (cfg.modality == Modality::CT) {
    const float lo = float(cfg.ct_clip_lo), hi = float(cfg.ct_clip_hi),
                inv = float(1.0 / (cfg.ct_clip_hi - cfg.ct_clip_lo));
    for (float& x : v.data) x = (std::clamp(x, lo, hi) - lo) * inv;
  }
  rec.dims = v.dims;
  out.body = body_mask(v, cfg.body_threshold);
  out.image = std::move(v);
  return out;
}

namespace {
bool spacing_unchanged(const PreprocessRecord& rec) {
  bool same = true;
  for (int a = 0; a < 3; ++a)
    same = same && std::fabs(rec.ras_spacing[size_t(a)] - rec.spacing[size_t(a)]) <= 1e-6 * rec.spacing[size_t(a)];
  return same;  // resample_to_spacing skipped the resampling
}
}  // namespace

Volume preprocess_labels(const Volume& labels, const PreprocessRecord& rec) {
  if (labels.dims != rec.original.dims) throw DataError("preprocess_labels: label map dims differ from the image's");
  Volume ras = apply_orientation(labels, rec.orient);
  std::array<double, 3> scale;
  for (int a = 0; a < 3; ++a) scale[size_t(a)] = rec.spacing[size_t(a)] / rec.ras_spacing[size_t(a)];
  Volume r = spacing_unchanged(rec) ? std::move(ras) : resample_scale(ras, rec.resampled_dims, scale, Interp::Nearest);
  return crop_or_pad(r, rec.crop_begin, rec.dims, 0.f);
}

namespace {
Volume restore(const Volume& v, const PreprocessRecord& rec, Interp interp, float fill, const char* what) {
  if (v.dims != rec.dims) throw DataError(std::string(what) + ": volume dims differ from the preprocessed grid");
  // Undo the crop/pad into the resampled grid.
  std::array<int64_t, 3> nb{-rec.crop_begin[0], -rec.crop_begin[1], -rec.crop_begin[2]};
  Volume r = crop_or_pad(v, nb, rec.resampled_dims, fill);
  // Undo the resampling, unless it was skipped.
  std::array<double, 3> scale;
  for (int a = 0; a < 3; ++a) scale[size_t(a)] = rec.ras_spacing[size_t(a)] / rec.spacing[size_t(a)];
  Volume ras = spacing_unchanged(rec) ? std::move(r) : resample_scale(r, rec.ras_dims, scale, interp);
  Volume orig = undo_orientation(ras, rec.orient);
  orig.affine = rec.original.affine;
  orig.spacing = affine_spacing(orig.affine);
  return orig;
}
}  // namespace

Volume restore_labels(const Volume& labels, const PreprocessRecord& rec) {
  return restore(labels, rec, Interp::Nearest, 0.f, "restore_labels");
}

Volume restore_image(const Volume& image, const PreprocessRecord& rec, float fill) {
  return restore(image, rec, Interp::Linear, fill, "restore_image");
}

}  // namespace hdssl::data
