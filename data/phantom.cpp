// Synthetic abdominal CT/MRI phantom.
//
// Anatomy is a list of soft shapes in world millimetres (ellipsoids and tubes along polylines), painted in
// order over a body with fat, muscle, bowel texture and a spine. Each voxel's world position is first moved
// by a smooth random displacement field (trilinear on a 40 mm lattice), so every subject is deformed
// differently; organ centres and sizes are also jittered. A shape's weight is a one-voxel linear ramp across
// its boundary (partial volume); the label goes to the last shape with weight >= 0.5. Texture is hashed
// value noise; acquisition noise is Gaussian per voxel. Everything is evaluated only inside each shape's
// bounding box.
#include "data/phantom.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "data/nifti.h"
#include "data/orient.h"
#include "engine/random.h"

namespace hdssl::data {

const std::vector<std::string>& btcv_label_names() {
  static const std::vector<std::string> n = {"background", "spleen", "right kidney", "left kidney", "gallbladder",
                                             "esophagus", "liver", "stomach", "aorta", "inferior vena cava",
                                             "portal and splenic vein", "pancreas", "right adrenal gland",
                                             "left adrenal gland"};
  return n;
}

namespace {

struct V3 { double x, y, z; };
V3 operator+(V3 a, V3 b) { return {a.x + b.x, a.y + b.y, a.z + b.z}; }
V3 operator-(V3 a, V3 b) { return {a.x - b.x, a.y - b.y, a.z - b.z}; }
V3 operator*(V3 a, double s) { return {a.x * s, a.y * s, a.z * s}; }
double dot(V3 a, V3 b) { return a.x * b.x + a.y * b.y + a.z * b.z; }

uint64_t hash3(int64_t x, int64_t y, int64_t z, uint64_t seed) {
  uint64_t h = seed ^ (uint64_t(x) * 0x9e3779b97f4a7c15ULL) ^ (uint64_t(y) * 0xc2b2ae3d27d4eb4fULL) ^ (uint64_t(z) * 0x165667b19e3779f9ULL);
  h ^= h >> 33; h *= 0xff51afd7ed558ccdULL; h ^= h >> 33; h *= 0xc4ceb9fe1a85ec53ULL; h ^= h >> 33;
  return h;
}
double lattice(int64_t x, int64_t y, int64_t z, uint64_t seed) { return double(hash3(x, y, z, seed) >> 11) * (2.0 / 9007199254740992.0) - 1.0; }

// Smooth value noise in [-1, 1] with feature size `scale` mm.
double vnoise(V3 p, double scale, uint64_t seed) {
  double fx = p.x / scale, fy = p.y / scale, fz = p.z / scale;
  int64_t ix = int64_t(std::floor(fx)), iy = int64_t(std::floor(fy)), iz = int64_t(std::floor(fz));
  double tx = fx - double(ix), ty = fy - double(iy), tz = fz - double(iz);
  tx = tx * tx * (3 - 2 * tx); ty = ty * ty * (3 - 2 * ty); tz = tz * tz * (3 - 2 * tz);
  double r = 0;
  for (int c = 0; c < 8; ++c) {
    int dx = c & 1, dy = (c >> 1) & 1, dz = (c >> 2) & 1;
    double w = (dx ? tx : 1 - tx) * (dy ? ty : 1 - ty) * (dz ? tz : 1 - tz);
    r += w * lattice(ix + dx, iy + dy, iz + dz, seed);
  }
  return r;
}

// Tissue values per modality.
enum Tissue { AIR, FAT, MUSCLE, BOWEL, GAS, BONE, MARROW, DISC, CSF, LIVER, SPLEEN, KCORTEX, KMEDULLA, BILE, ESOPH,
              STWALL, STCONTENT, AORTA, IVC, VEIN, PANCREAS, ADRENAL, NTISSUE };
const double kCT[NTISSUE] = {-1000, -100, 55, 30, -850, 650, 220, 90, 10, 105, 118, 185, 125, 8, 45, 50, 15, 175, 135, 160, 92, 38};
const double kMR[NTISSUE] = {0, 900, 300, 400, 0, 80, 600, 250, 100, 520, 380, 460, 300, 120, 320, 350, 150, 650, 600, 620, 560, 330};

struct Shape {
  enum Kind { Ellipsoid, Tube } kind = Ellipsoid;
  int label = 0;
  V3 c{0, 0, 0}, a{1, 1, 1};   // ellipsoid centre and semi-axes
  double angle = 0;           // rotation about z (radians)
  std::vector<V3> path;       // tube centreline
  double radius = 0;
  V3 lo{0, 0, 0}, hi{0, 0, 0};  // bounding box (world, deformed coordinates)

  void finish(double margin) {
    if (kind == Ellipsoid) {
      double r = std::max({a.x, a.y, a.z}) + margin;
      lo = c - V3{r, r, a.z + margin};
      hi = c + V3{r, r, a.z + margin};
    } else {
      lo = hi = path[0];
      for (const V3& q : path) {
        lo = {std::min(lo.x, q.x), std::min(lo.y, q.y), std::min(lo.z, q.z)};
        hi = {std::max(hi.x, q.x), std::max(hi.y, q.y), std::max(hi.z, q.z)};
      }
      double r = radius + margin;
      lo = lo - V3{r, r, r};
      hi = hi + V3{r, r, r};
    }
  }
  bool in_box(V3 p) const { return p.x >= lo.x && p.x <= hi.x && p.y >= lo.y && p.y <= hi.y && p.z >= lo.z && p.z <= hi.z; }
  // Approximate signed distance (mm) and, for ellipsoids, the normalised radius.
  double sd(V3 p, double* rn = nullptr) const {
    if (kind == Ellipsoid) {
      V3 d = p - c;
      double ca = std::cos(angle), sa = std::sin(angle);
      double u = (ca * d.x + sa * d.y) / a.x, v = (-sa * d.x + ca * d.y) / a.y, w = d.z / a.z;
      double r = std::sqrt(u * u + v * v + w * w);
      if (rn) *rn = r;
      return (r - 1) * std::min({a.x, a.y, a.z});
    }
    double best = 1e30;
    for (size_t i = 0; i + 1 < path.size(); ++i) {
      V3 ab = path[i + 1] - path[i];
      double t = std::clamp(dot(p - path[i], ab) / dot(ab, ab), 0.0, 1.0);
      V3 q = p - (path[i] + ab * t);
      best = std::min(best, dot(q, q));
    }
    double d = std::sqrt(best);
    if (rn) *rn = d / radius;
    return d - radius;
  }
};

Shape ellipsoid(int label, V3 c, V3 a, double angle = 0) {
  Shape s;
  s.label = label; s.c = c; s.a = a; s.angle = angle;
  return s;
}
Shape tube(int label, std::vector<V3> path, double radius) {
  Shape s;
  s.kind = Shape::Tube; s.label = label; s.path = std::move(path); s.radius = radius;
  return s;
}

struct Anatomy {
  double A, B;      // body semi-axes at mid height (mm)
  double Lz;        // volume height
  double ys;        // vertebral body centre y
  double fat;       // subcutaneous fat thickness
  std::vector<Shape> organs;
  std::vector<double> organ_value;  // main tissue value per organ
  std::vector<uint64_t> organ_seed;
};

}  // namespace

Phantom make_phantom(const PhantomConfig& cfg, uint64_t seed, uint64_t case_index) {
  Rng rng = Rng(seed, 0x9a7).split(case_index);
  const double* T = cfg.modality == Modality::CT ? kCT : kMR;
  auto J = [&](double s) { return rng.uniform(-s, s); };           // jitter
  auto S = [&](double s) { return 1.0 + rng.uniform(-s, s); };     // scale

  Anatomy an;
  an.Lz = cfg.fov[2];
  const double Lz = an.Lz;
  an.A = 150 * S(0.08);
  an.B = 108 * S(0.08);
  an.fat = 12 + rng.uniform(0, 14);
  an.ys = -an.B + 55;
  const double ys = an.ys;
  // Organs in painting order (later ones win where they overlap).
  std::vector<Shape>& O = an.organs;
  double org = S(0.1);
  O.push_back(ellipsoid(6, {60 + J(8), 2 + J(8), 0.76 * Lz + J(8)}, V3{78, 66, 68} * org, J(0.2)));        // liver right lobe
  O.push_back(ellipsoid(6, {-5 + J(8), 38 + J(6), 0.77 * Lz + J(8)}, V3{58 * S(0.15), 34, 45} * org, J(0.2)));  // liver left lobe
  O.push_back(ellipsoid(4, {42 + J(8), 32 + J(6), 0.56 * Lz + J(8)}, V3{13, 13, 28} * S(0.2), J(0.5)));     // gallbladder
  O.push_back(ellipsoid(7, {-48 + J(8), 40 + J(8), 0.66 * Lz + J(10)}, V3{45, 36, 52} * S(0.15), J(0.3)));  // stomach
  O.push_back(ellipsoid(1, {-98 + J(6), -38 + J(6), 0.74 * Lz + J(8)}, V3{24, 48, 44} * S(0.15), 0.8 + J(0.2)));  // spleen
  double kz = 0.36 * Lz;
  O.push_back(ellipsoid(2, {66 + J(6), ys + 2 + J(6), kz + J(8)}, V3{26, 24, 52} * S(0.1), 0.5 + J(0.2)));   // right kidney
  O.push_back(ellipsoid(3, {-66 + J(6), ys + 4 + J(6), kz + 10 + J(8)}, V3{26, 24, 52} * S(0.1), -0.5 + J(0.2)));  // left kidney
  double ax = -16 + J(4), ay = ys + 32 + J(3);
  O.push_back(tube(8, {{ax, ay, -10}, {ax + J(4), ay + J(3), 0.5 * Lz}, {ax + 3 + J(3), ay - 4, Lz + 10}}, 10.5 * S(0.1)));  // aorta
  double vx = 22 + J(4), vy = ys + 30 + J(3);
  O.push_back(tube(9, {{vx, vy, -10}, {vx + 3 + J(3), vy + J(3), 0.5 * Lz}, {vx + 8, vy + 6, 0.78 * Lz}}, 10 * S(0.1)));  // IVC
  double pz = 0.56 * Lz + J(6);
  V3 conf{2 + J(4), ay + 22 + J(3), pz};  // portal confluence
  O.push_back(tube(11, {{30 + J(4), conf.y + 10, pz - 14}, {conf.x, conf.y + 12, pz}, {-40, conf.y + 4, pz + 8},
                        {-78 + J(5), conf.y - 18, pz + 16}}, 9 * S(0.15)));                                       // pancreas
  O.push_back(ellipsoid(11, {28 + J(4), conf.y + 10, pz - 16}, V3{15, 13, 16} * S(0.1)));                          // pancreatic head
  O.push_back(tube(10, {{-82 + J(4), conf.y - 22, pz + 18}, {-40, conf.y - 6, pz + 8}, conf,
                        {34 + J(4), conf.y + 8, pz + 20}, {52 + J(4), conf.y + 4, pz + 30}}, 5.5 * S(0.15)));     // splenic + portal vein
  O.push_back(tube(5, {{-12 + J(3), ay + 12, 0.80 * Lz}, {-22 + J(3), ay + 6, Lz + 10}}, 8 * S(0.1)));            // esophagus
  double adz = kz + 50;
  O.push_back(ellipsoid(12, {48 + J(4), ys + 22 + J(4), adz + J(5)}, V3{3.5, 13, 14} * S(0.15), 0.6 + J(0.2)));   // right adrenal
  O.push_back(ellipsoid(13, {-46 + J(4), ys + 24 + J(4), adz + 8 + J(5)}, V3{3.5, 13, 14} * S(0.15), -0.6 + J(0.2)));  // left adrenal
  const std::array<Tissue, 14> main_tissue = {AIR, SPLEEN, KCORTEX, KCORTEX, BILE, ESOPH, LIVER, STWALL, AORTA, IVC, VEIN, PANCREAS, ADRENAL, ADRENAL};
  for (auto& s : O) {
    s.finish(6);
    an.organ_value.push_back(T[main_tissue[size_t(s.label)]] + (cfg.modality == Modality::CT ? J(10) : J(40)));
    an.organ_seed.push_back(rng.next_u64());
  }

  // Smooth displacement field on a coarse lattice.
  const double lat = 40;
  const int gx = int(cfg.fov[0] / lat) + 3, gy = int(cfg.fov[1] / lat) + 3, gz = int(cfg.fov[2] / lat) + 3;
  std::vector<V3> disp(size_t(gx * gy * gz));
  double amp = 5 + rng.uniform(0, 4);
  for (auto& d : disp) d = {amp * rng.normal(), amp * rng.normal(), 0.6 * amp * rng.normal()};
  const V3 origin{-cfg.fov[0] / 2, -cfg.fov[1] / 2, 0};
  auto displacement = [&](V3 p) {
    double fx = (p.x - origin.x) / lat + 1, fy = (p.y - origin.y) / lat + 1, fz = (p.z - origin.z) / lat + 1;
    int ix = std::clamp(int(fx), 0, gx - 2), iy = std::clamp(int(fy), 0, gy - 2), iz = std::clamp(int(fz), 0, gz - 2);
    double tx = std::clamp(fx - ix, 0.0, 1.0), ty = std::clamp(fy - iy, 0.0, 1.0), tz = std::clamp(fz - iz, 0.0, 1.0);
    V3 r{0, 0, 0};
    for (int c = 0; c < 8; ++c) {
      int dx = c & 1, dy = (c >> 1) & 1, dz = (c >> 2) & 1;
      double w = (dx ? tx : 1 - tx) * (dy ? ty : 1 - ty) * (dz ? tz : 1 - tz);
      r = r + disp[size_t(((ix + dx) * gy + iy + dy) * gz + iz + dz)] * w;
    }
    return r;
  };
  const uint64_t tex_seed = rng.next_u64(), body_seed = rng.next_u64();
  const double noise_sigma = cfg.modality == Modality::CT ? 12 + rng.uniform(0, 8) : 12 + rng.uniform(0, 10);
  const double disc_phase = rng.uniform(0, 28);

  Dims3 dims;
  for (int a = 0; a < 3; ++a) dims[size_t(a)] = std::max<int64_t>(8, std::llround(cfg.fov[size_t(a)] / cfg.spacing[size_t(a)]));
  Phantom ph;
  ph.image = Volume(dims);
  ph.labels = Volume(dims);
  ph.image.set_diagonal_affine(cfg.spacing, {origin.x + 0.5 * cfg.spacing[0], origin.y + 0.5 * cfg.spacing[1], 0.5 * cfg.spacing[2]});
  ph.labels.affine = ph.image.affine;
  ph.labels.spacing = ph.image.spacing;
  const double h = (cfg.spacing[0] + cfg.spacing[1] + cfg.spacing[2]) / 3;  // partial-volume ramp width
  auto ramp = [&](double sd) { return std::clamp(0.5 - sd / h, 0.0, 1.0); };
  auto mix = [](double& v, double w, double t) { v += w * (t - v); };

  // Slices are independent (each has its own noise stream), so threads never change the result.
#pragma omp parallel for schedule(dynamic)
  for (int64_t z = 0; z < dims[2]; ++z) {
    Rng nrng = rng.split(1000 + uint64_t(z));
    const double wz = ph.image.affine[2][3] + double(z) * cfg.spacing[2];
    for (int64_t y = 0; y < dims[1]; ++y) {
      const double wy = ph.image.affine[1][3] + double(y) * cfg.spacing[1];
      for (int64_t x = 0; x < dims[0]; ++x) {
        const double wx = ph.image.affine[0][3] + double(x) * cfg.spacing[0];
        V3 p0{wx, wy, wz};
        V3 p = p0 + displacement(p0);
        double tz = std::clamp(p.z / Lz, 0.0, 1.0);  // 0 = inferior, 1 = superior
        // Body outline: an ellipse that widens a little towards the pelvis, with a flatter back.
        double A = an.A * (1.0 + 0.06 * (0.5 - tz)), B = an.B * (1.0 + 0.04 * (0.5 - tz));
        double by = p.y < 0 ? B * 0.92 : B;
        double rb = std::sqrt((p.x / A) * (p.x / A) + (p.y / by) * (p.y / by));
        double sdb = (rb - 1) * std::min(A, by);
        double v = T[AIR];
        int label = 0;
        double wb = ramp(sdb);
        if (wb > 0) {
          double t = T[FAT];
          double sdm = sdb + an.fat;                           // abdominal wall muscle
          double wm = ramp(sdm) * (1 - ramp(sdm + 11));
          double cav = ramp(sdm + 11);                         // visceral cavity
          double vis = T[FAT];
          double n1 = vnoise(p, 14, body_seed), n2 = vnoise(p, 9, body_seed + 1);
          double bowel = std::clamp(0.5 + 2.5 * n1, 0.0, 1.0);
          vis = T[FAT] + bowel * (T[BOWEL] - T[FAT]);
          if (n2 > 0.55 && bowel > 0.5) vis = T[GAS] + (vis - T[GAS]) * std::clamp((0.7 - n2) / 0.15, 0.0, 1.0);
          mix(t, wm, T[MUSCLE]);
          mix(t, cav, vis);
          // Spine: vertebral body with cortical rim, discs, canal, posterior elements; psoas and back muscles.
          double dzs = std::fmod(p.z + disc_phase + 280, 28.0);
          bool disc = dzs < 5.5;
          double rv = std::sqrt((p.x / 21) * (p.x / 21) + ((p.y - ys) / 16) * ((p.y - ys) / 16));
          double back = std::sqrt(((std::fabs(p.x) - 32) / 24) * ((std::fabs(p.x) - 32) / 24) + ((p.y - ys + 42) / 22) * ((p.y - ys + 42) / 22));
          mix(t, ramp((back - 1) * 20) * wb, T[MUSCLE]);
          double psa = 10 + 14 * (1 - tz), psb = 12 + 6 * (1 - tz);
          double rp = std::sqrt(((std::fabs(p.x) - 24 - psa) / psa) * ((std::fabs(p.x) - 24 - psa) / psa) + ((p.y - ys - 4) / psb) * ((p.y - ys - 4) / psb));
          if (tz < 0.75) mix(t, ramp((rp - 1) * psb) * ramp((tz - 0.75) * 60), T[MUSCLE]);
          double wv = ramp((rv - 1) * 16);
          if (wv > 0) mix(t, wv, disc ? T[DISC] : (rv > 0.82 ? T[BONE] : T[MARROW] + 25 * vnoise(p, 3, tex_seed)));
          double rc = std::sqrt(p.x * p.x + (p.y - ys + 27) * (p.y - ys + 27));
          if (!disc) mix(t, ramp(rc - 14), T[BONE]);          // lamina ring
          mix(t, ramp(rc - 8.5), T[CSF]);                      // canal
          double rs = std::sqrt((p.x / 5) * (p.x / 5) + ((p.y - ys + 48) / 11) * ((p.y - ys + 48) / 11));
          if (!disc) mix(t, ramp((rs - 1) * 5), T[BONE]);      // spinous process
          // Ribs in the upper part: arcs just inside the muscle wall.
          if (tz > 0.55 && p.y < 0.45 * B) {
            double rz = std::fmod(p.z + 0.45 * std::fabs(p.x) + 1000, 24.0);  // oblique ribs: arcs, not rings
            if (rz < 9) mix(t, ramp(std::fabs(sdm + 5) - 4) * ramp(std::fabs(rz - 4.5) - 4.5), T[BONE]);
          }
          v = T[AIR] + wb * (t - T[AIR]);
          // Organs.
          for (size_t k = 0; k < an.organs.size(); ++k) {
            const Shape& s = an.organs[k];
            if (!s.in_box(p)) continue;
            double rn;
            double w = ramp(s.sd(p, &rn));
            if (w <= 0) continue;
            double ov = an.organ_value[k] + (cfg.modality == Modality::CT ? 9 : 30) * vnoise(p, 7, an.organ_seed[k]);
            if (s.label == 2 || s.label == 3) {  // kidney: cortex outside, medulla inside, sinus fat at the hilum
              if (rn < 0.72) ov = T[KMEDULLA] + (ov - T[KCORTEX]);
              if (rn < 0.45) ov = T[FAT] + 20;
            } else if (s.label == 7) {  // stomach: wall, fluid, and an air cap on the anterior (up) side
              if (rn < 0.82) ov = (p.y - s.c.y > 0.45 * s.a.y) ? T[GAS] : T[STCONTENT];
            } else if (s.label == 6) {  // liver: a few vessels
              double nv = vnoise(p, 11, an.organ_seed[k] + 7);
              if (std::fabs(nv) < 0.04) ov = T[VEIN] - 20;
            }
            mix(v, w, ov);
            if (w >= 0.5) label = s.label;
          }
        }
        if (cfg.modality == Modality::MRI) v = std::max(0.0, v);
        v += noise_sigma * nrng.normal() * (cfg.modality == Modality::CT || wb > 0.1 ? 1.0 : 0.3);
        ph.image.at(x, y, z) = float(v);
        ph.labels.at(x, y, z) = float(label);
      }
    }
  }
  if (cfg.modality == Modality::MRI) {  // smooth multiplicative bias field; magnitude images are positive
    uint64_t bseed = rng.next_u64();
    double strength = 0.25 + rng.uniform(0, 0.2);
#pragma omp parallel for
    for (int64_t x = 0; x < dims[0]; ++x)
      for (int64_t y = 0; y < dims[1]; ++y)
        for (int64_t z = 0; z < dims[2]; ++z) {
          V3 p{ph.image.affine[0][3] + double(x) * cfg.spacing[0], ph.image.affine[1][3] + double(y) * cfg.spacing[1],
               ph.image.affine[2][3] + double(z) * cfg.spacing[2]};
          float& v = ph.image.at(x, y, z);
          v = float(std::fabs(double(v)) * std::exp(strength * vnoise(p, 120, bseed)));
        }
  }
  if (cfg.lps_file_axes) {
    OrientRecord r;
    r.flip = {true, true, false};
    r.old_dims = dims;
    ph.image = apply_orientation(ph.image, r);
    ph.labels = apply_orientation(ph.labels, r);
  }
  return ph;
}

void write_phantom_dataset_json(const std::string& dir, int cases, uint64_t seed, const PhantomConfig& cfg) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(fs::path(dir) / "imagesTr", ec);
  fs::create_directories(fs::path(dir) / "labelsTr", ec);
  if (ec) throw DataError(dir + ": cannot create folder: " + ec.message());
  nlohmann::ordered_json j;
  j["name"] = cfg.modality == Modality::CT ? "SyntheticAbdomenCT" : "SyntheticAbdomenMRI";
  j["description"] = "hdssl synthetic abdominal phantoms (seed " + std::to_string(seed) + "), BTCV label numbering";
  j["channel_names"] = {{"0", cfg.modality == Modality::CT ? "CT" : "MRI"}};
  nlohmann::ordered_json labels;
  const auto& names = btcv_label_names();
  for (size_t i = 0; i < names.size(); ++i) labels[names[i]] = int(i);
  j["labels"] = labels;
  j["numTraining"] = cases;
  j["file_ending"] = ".nii.gz";
  std::ofstream f(fs::path(dir) / "dataset.json");
  f << j.dump(2) << "\n";
  if (!f) throw DataError(dir + "/dataset.json: cannot write");
}

std::string write_phantom_case(const std::string& dir, int i, uint64_t seed, const PhantomConfig& cfg, bool unlabeled) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(unlabeled ? fs::path(dir) : fs::path(dir) / "imagesTr", ec);
  if (!unlabeled) fs::create_directories(fs::path(dir) / "labelsTr", ec);
  if (ec) throw DataError(dir + ": cannot create folder: " + ec.message());
  char name[64];
  std::snprintf(name, sizeof name, "phantom_%03d", i);
  Phantom ph = make_phantom(cfg, seed, uint64_t(i));
  std::string img = unlabeled ? (fs::path(dir) / (std::string(name) + ".nii.gz")).string()
                              : (fs::path(dir) / "imagesTr" / (std::string(name) + "_0000.nii.gz")).string();
  if (cfg.modality == Modality::CT) {
    for (float& v : ph.image.data) v = std::clamp(std::nearbyint(v), -32768.f, 32767.f);
    write_nifti(img, ph.image, kInt16);
  } else {
    write_nifti(img, ph.image, kFloat32);
  }
  if (!unlabeled) write_label_nifti((fs::path(dir) / "labelsTr" / (std::string(name) + ".nii.gz")).string(), ph.labels);
  return img;
}

std::vector<std::string> write_phantom_dataset(const std::string& dir, int cases, uint64_t seed, const PhantomConfig& cfg,
                                               bool unlabeled, int first_case) {
  if (!unlabeled) write_phantom_dataset_json(dir, cases, seed, cfg);
  std::vector<std::string> written;
  for (int i = first_case; i < first_case + cases; ++i) written.push_back(write_phantom_case(dir, i, seed, cfg, unlabeled));
  return written;
}

}  // namespace hdssl::data
