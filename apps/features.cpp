// ./features: per-voxel feature maps of NIfTI images with a pretrained backbone, for other tools.
//
//   ./features -i IMAGE_OR_DIR -o OUT -w backbone.safetensors            every level, upsampled, input grid
//   ./features ... --levels 0,1 --grid preprocessed --format safetensors
//   ./features ... --per-level                                          each level on its own grid
//
// Each image is preprocessed as the weights expect (the "preprocessing" their file records: ./pretrain's
// backbone and scripts/import_weights.py write it; --modality when it is absent), run through the FPN3d in
// eval mode with a sliding window of --patch (50 % overlap, overlaps averaged), and each chosen level is
// brought to the full-resolution grid by nearest upsampling (voxel v takes level i's feature at
// floor(v / 2^i), the voxel vector of docs/method.md section 3 step 5). With a pretraining checkpoint
// holding scale_projs, the "balanced" projections are applied per level first (--raw: the raw channels).
// Channels are concatenated in level order: level 0's first.
//
// Output per image (<case> as ./predict names it):
//   OUT/<case>_features.nii.gz    float32, 4D (x, y, z, channel); --grid input (default): the input file's
//                                 grid and qform/sform (linear resampling back, 0 outside the body crop);
//                                 --grid preprocessed: the RAS, resampled, cropped grid the network saw
//   --per-level: OUT/<case>_level<i>.nii.gz on level i's own grid (preprocessed grid sampled every 2^i
//                voxels, affine scaled to match); for a volume within one patch these are the network's
//                level outputs exactly
//   --format safetensors: OUT/<case>_features.safetensors, tensors "features" [C, X, Y, Z] or "level_<i>",
//                with the affine (voxel -> RAS mm), levels and channel counts in the metadata
//   OUT/<case>_pca.png            the axial slice through the body's centre: image | first three principal
//                                 components of the features as RGB (each scaled over its 1st..99th
//                                 percentile), so one sees what the features separate
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <numeric>
#include <sstream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "apps/common/device_setup.h"
#include "apps/common/settings.h"
#include "autograd/variable.h"
#include "data/dataset.h"
#include "data/nifti.h"
#include "data/png.h"
#include "data/preprocess.h"
#include "data/preprocess_compat.h"
#include "engine/backend.h"
#include "eval/inference.h"
#include "eval/sliding_window.h"
#include "models/checkpoint.h"
#include "models/fpn3d.h"
#include "models/segmentation.h"

using namespace hdssl;
namespace fs = std::filesystem;

namespace {

struct Backbone {
  std::unique_ptr<models::FPN3d> fpn;
  std::vector<Tensor> proj_w, proj_b;  // per level [width, C_i] and [width] (host float32), empty: raw
  data::PreprocessConfig preprocess;
};

Backbone load_backbone(const std::string& path, bool raw, const std::string& modality, Device device) {
  models::SafeTensors st = models::read_safetensors(path);
  const std::string prefix = models::backbone_prefix_of(st);
  Backbone b;
  Rng rng(0);
  b.fpn = std::make_unique<models::FPN3d>(models::fpn_config_of(st, prefix), rng);
  models::load_module_state(*b.fpn, st, prefix, true);
  b.fpn->to(device);
  b.fpn->train(false);
  const int scales = b.fpn->config().scales;
  if (!raw && st.find("scale_projs.0.weight")) {
    for (int i = 0; i < scales; ++i) {
      const models::StoredTensor* w = st.find("scale_projs." + std::to_string(i) + ".weight");
      const models::StoredTensor* bias = st.find("scale_projs." + std::to_string(i) + ".bias");
      if (!w || !bias || w->shape.size() != 5 || w->shape[1] != b.fpn->config().channels(i))
        throw models::CheckpointError(path + ": scale_projs." + std::to_string(i) + " missing or mis-shaped");
      b.proj_w.push_back(models::to_tensor(*w, DType::F32, Device::cpu()).reshape({w->shape[0], w->shape[1]}));
      b.proj_b.push_back(models::to_tensor(*bias, DType::F32, Device::cpu()));
    }
  }
  auto pre = data::expected_preprocessing(st.metadata, path);
  if (modality.empty() && !pre)
    throw Error(path + " records no preprocessing: say which with --modality ct|mri (hdssl's presets)");
  if (!modality.empty()) {
    const data::PreprocessConfig mine =
        modality == "mri" ? data::PreprocessConfig::mri() : data::PreprocessConfig::ct();
    if (pre && pre->modality != mine.modality)
      throw Error("--modality " + modality + ": " + data::preprocess_differences(*pre, mine));
    if (!pre) pre = mine;
  }
  b.preprocess = *pre;
  return b;
}

// Channels of level i in the output (projection width or base * 2^i).
int64_t level_channels(const Backbone& b, int i) {
  return b.proj_w.empty() ? b.fpn->config().channels(i) : b.proj_w[size_t(i)].size(0);
}

// Patches [B, 1, X, Y, Z] -> chosen levels, projected, nearest-upsampled to the patch and concatenated.
Tensor patch_features(const Backbone& b, const std::vector<int>& levels, const Tensor& x, Device device) {
  NoGradGuard no_grad;
  std::vector<Variable> pyr = b.fpn->forward(Variable(x.to(device)));
  const int64_t B = x.size(0), X = x.size(2), Y = x.size(3), Z = x.size(4);
  int64_t K = 0;
  for (int i : levels) K += level_channels(b, i);
  std::vector<float> out(size_t(B * K * X * Y * Z));
  int64_t k0 = 0;
  for (int i : levels) {
    Tensor f = pyr[size_t(i)].value().to(Device::cpu()).to(DType::F32);
    const int64_t C = f.size(1), x1 = f.size(2), y1 = f.size(3), z1 = f.size(4), n1 = x1 * y1 * z1;
    std::vector<float> src = f.to_vector<float>();
    int64_t Kc = C;
    if (!b.proj_w.empty()) {  // 1x1x1 conv at the level's resolution (cheaper than after upsampling)
      const std::vector<float> w = b.proj_w[size_t(i)].to_vector<float>(),
                               bias = b.proj_b[size_t(i)].to_vector<float>();
      Kc = int64_t(bias.size());
      std::vector<float> p(size_t(B * Kc * n1));
      for (int64_t bb = 0; bb < B; ++bb)
        for (int64_t o = 0; o < Kc; ++o) {
          float* dst = &p[size_t((bb * Kc + o) * n1)];
          std::fill(dst, dst + n1, bias[size_t(o)]);
          for (int64_t c = 0; c < C; ++c) {
            const float wc = w[size_t(o * C + c)];
            const float* s = &src[size_t((bb * C + c) * n1)];
            for (int64_t v = 0; v < n1; ++v) dst[v] += wc * s[v];
          }
        }
      src.swap(p);
    }
    const int s = 1 << i;
    for (int64_t bb = 0; bb < B; ++bb)
      for (int64_t c = 0; c < Kc; ++c) {
        const float* lv = &src[size_t((bb * Kc + c) * n1)];
        float* dst = &out[size_t((bb * K + k0 + c) * X * Y * Z)];
        for (int64_t xx = 0; xx < X; ++xx)
          for (int64_t yy = 0; yy < Y; ++yy)
            for (int64_t zz = 0; zz < Z; ++zz) dst[(xx * Y + yy) * Z + zz] = lv[((xx / s) * y1 + yy / s) * z1 + zz / s];
      }
    k0 += Kc;
  }
  return Tensor::from_vector(out, {B, K, X, Y, Z});
}

// Channel c of features [K, X, Y, Z] as a Volume on `like`'s grid.
data::Volume channel(const Tensor& feats, int64_t c, const data::Volume& like) {
  data::Volume v = like;
  const float* p = feats.data<float>() + c * like.numel();
  std::copy(p, p + like.numel(), v.data.begin());
  return v;
}

// Level i's grid: every 2^i-th voxel of the full-resolution channels [k0, k0 + n).
std::vector<data::Volume> subsample(const Tensor& feats, int64_t k0, int64_t n, int i, const data::Volume& like) {
  const int s = 1 << i;
  data::Volume g({(like.dims[0] + s - 1) / s, (like.dims[1] + s - 1) / s, (like.dims[2] + s - 1) / s});
  g.affine = like.affine;
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) g.affine[size_t(r)][size_t(c)] *= s;
  g.spacing = data::affine_spacing(g.affine);
  std::vector<data::Volume> out;
  for (int64_t c = k0; c < k0 + n; ++c) {
    data::Volume full = channel(feats, c, like), v = g;
    for (int64_t x = 0; x < g.dims[0]; ++x)
      for (int64_t y = 0; y < g.dims[1]; ++y)
        for (int64_t z = 0; z < g.dims[2]; ++z) v.at(x, y, z) = full.at(x * s, y * s, z * s);
    out.push_back(std::move(v));
  }
  return out;
}

// The first three principal components of the features on axial slice z, as RGB beside the grey image.
void write_pca_png(const std::string& path, const Tensor& feats, const data::Volume& image, int64_t z) {
  const int64_t K = feats.size(0), W = image.dims[0], H = image.dims[1], n = W * H;
  std::vector<double> f(size_t(n * K)), mean(size_t(K), 0.0);
  const float* p = feats.data<float>();
  for (int64_t x = 0; x < W; ++x)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t k = 0; k < K; ++k) {
        const double v = p[k * image.numel() + image.index(x, y, z)];
        f[size_t((x * H + y) * K + k)] = v;
        mean[size_t(k)] += v / double(n);
      }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < K; ++k) f[size_t(i * K + k)] -= mean[size_t(k)];
  std::vector<double> cov(size_t(K * K), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t a = 0; a < K; ++a)
      for (int64_t b = 0; b <= a; ++b) cov[size_t(a * K + b)] += f[size_t(i * K + a)] * f[size_t(i * K + b)];
  for (int64_t a = 0; a < K; ++a)
    for (int64_t b = 0; b < a; ++b) cov[size_t(b * K + a)] = cov[size_t(a * K + b)];
  // Power iteration with deflation: the three leading eigenvectors of the covariance.
  std::vector<std::vector<double>> comps;
  for (int c = 0; c < std::min<int64_t>(3, K); ++c) {
    std::vector<double> v(static_cast<size_t>(K)), w(static_cast<size_t>(K));
    for (int64_t k = 0; k < K; ++k) v[size_t(k)] = 1.0 + 0.01 * double((k * 7 + c * 13) % 17);
    for (int it = 0; it < 300; ++it) {
      for (int64_t a = 0; a < K; ++a) {
        double s = 0;
        for (int64_t b = 0; b < K; ++b) s += cov[size_t(a * K + b)] * v[size_t(b)];
        w[size_t(a)] = s;
      }
      for (const auto& u : comps) {  // stay orthogonal to the components found
        const double d = std::inner_product(w.begin(), w.end(), u.begin(), 0.0);
        for (int64_t k = 0; k < K; ++k) w[size_t(k)] -= d * u[size_t(k)];
      }
      const double norm = std::sqrt(std::inner_product(w.begin(), w.end(), w.begin(), 0.0));
      if (norm < 1e-30) break;
      for (int64_t k = 0; k < K; ++k) v[size_t(k)] = w[size_t(k)] / norm;
    }
    comps.push_back(v);
  }
  std::vector<std::vector<double>> score(3, std::vector<double>(size_t(n), 0.0));
  std::array<double, 3> lo{0, 0, 0}, hi{1, 1, 1};
  for (size_t c = 0; c < comps.size(); ++c) {
    for (int64_t i = 0; i < n; ++i)
      score[c][size_t(i)] = std::inner_product(comps[c].begin(), comps[c].end(), f.begin() + i * K, 0.0);
    std::vector<double> s = score[c];
    std::sort(s.begin(), s.end());
    lo[c] = s[size_t(double(n - 1) * 0.01)], hi[c] = s[size_t(double(n - 1) * 0.99)];
    if (hi[c] <= lo[c]) hi[c] = lo[c] + 1;
  }
  const int64_t up = std::max<int64_t>(1, 256 / std::max(W, H));  // small grids drawn larger (nearest)
  std::vector<unsigned char> rgb(size_t(2 * W * H * 3 * up * up));
  for (int64_t r = 0; r < H * up; ++r)
    for (int64_t col = 0; col < W * up; ++col) {
      const int64_t x = W - 1 - col / up, y = H - 1 - r / up;  // radiological, as write_axial_png
      const auto g = (unsigned char)(std::clamp(double(image.at(x, y, z)), 0.0, 1.0) * 255 + 0.5);
      unsigned char* px = &rgb[size_t((r * 2 * W * up + col) * 3)];
      px[0] = px[1] = px[2] = g;
      unsigned char* q = &rgb[size_t((r * 2 * W * up + W * up + col) * 3)];
      for (int c = 0; c < 3; ++c)
        q[c] = (unsigned char)(std::clamp((score[size_t(c)][size_t(x * H + y)] - lo[size_t(c)]) /
                                              (hi[size_t(c)] - lo[size_t(c)]),
                                          0.0, 1.0) *
                                   255 +
                               0.5);
    }
  data::write_rgb_png(path, 2 * W * up, H * up, rgb);
}

// The axial slice through the body mask's centre of mass (the middle slice when the mask is empty).
int64_t body_slice(const data::Mask& body) {
  double sz = 0, n = 0;
  for (int64_t i = 0; i < int64_t(body.data.size()); ++i)
    if (body.data[size_t(i)]) sz += double(i % body.dims[2]), n += 1;
  return n > 0 ? int64_t(sz / n + 0.5) : body.dims[2] / 2;
}

void write_safetensors_features(const std::string& path,
                                const std::vector<std::pair<std::string, std::vector<data::Volume>>>& maps,
                                const std::map<std::string, std::string>& meta) {
  models::SafeTensors st;
  st.metadata = meta;
  for (const auto& [name, vols] : maps) {
    const data::Dims3 d = vols[0].dims;
    std::vector<float> all;
    all.reserve(size_t(int64_t(vols.size()) * vols[0].numel()));
    for (const auto& v : vols) all.insert(all.end(), v.data.begin(), v.data.end());
    st.add(name, Tensor::from_vector(all, {int64_t(vols.size()), d[0], d[1], d[2]}));
    st.metadata["affine." + name] = nlohmann::json(vols[0].affine).dump();
  }
  models::write_safetensors(path, st);
}

}  // namespace

int main(int argc, char** argv) {
  std::string input, out, weights, levels_arg = "all", grid = "input", format = "nifti", modality,
                                   device_name = app::kDefaultDevice;
  std::vector<int64_t> patch{128, 128, 32};
  int window_batch = 1, threads = 0;
  bool per_level = false, raw = false, no_png = false;
  CLI::App app{"hdssl features: per-voxel feature maps of NIfTI images with a pretrained FPN3d backbone"};
  app.add_option("-i,--input", input, "a NIfTI image or a folder searched recursively")->required();
  app.add_option("-o,--out", out, "output folder")->required();
  app.add_option("-w,--weights", weights,
                 "backbone.safetensors (./pretrain, scripts/import_weights.py) or a pretraining checkpoint")
      ->required();
  app.add_option("--levels", levels_arg, "pyramid levels to write, e.g. 0,1,2 (0 = full resolution) or all")
      ->capture_default_str();
  app.add_option("--grid", grid, "input: the input file's grid; preprocessed: the grid the network saw")
      ->capture_default_str()
      ->check(CLI::IsMember({"input", "preprocessed"}));
  app.add_flag("--per-level", per_level,
               "each level on its own grid (preprocessed, every 2^i voxels) instead of upsampled");
  app.add_flag("--raw", raw, "raw pyramid channels even when the checkpoint has the balanced scale_projs");
  app.add_option("--format", format, "nifti | safetensors")
      ->capture_default_str()
      ->check(CLI::IsMember({"nifti", "safetensors"}));
  app.add_option("--patch", patch, "sliding-window size (x y z)")->expected(3)->capture_default_str();
  app.add_option("--window-batch", window_batch, "sliding windows per forward")->capture_default_str();
  app.add_option("--modality", modality, "ct | mri, when the weights record no preprocessing")
      ->check(CLI::IsMember({"ct", "mri"}));
  app.add_flag("--no-png", no_png, "skip the principal-component PNG");
  app.add_option("--device", device_name, "cpu | cuda | cuda:N | auto (the first GPU when there is one, else cpu)")
      ->capture_default_str();
  app.add_option("--threads", threads, "CPU threads for the math (default: all cores)");
  app.get_option("--window-batch")->check(CLI::Range(1, 1 << 20));
  app.get_option("--threads")->check(CLI::Range(0, 1 << 16));
  app.get_option("--patch")->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  if (int rc = app::parse_command_line(app, argc, argv); rc >= 0) return rc;  // exit codes: apps/README.md
  Device device;
  try {
    device = app::open_device(device_name);
  } catch (const Error& e) {  // an unknown name, or a GPU asked for where none is usable
    std::cerr << "features: error: " << e.what() << std::endl;
    return 2;
  }
  std::cout << app::device_line(device_name, device) << "\n";
  try {
    if (per_level && grid == "input") grid = "preprocessed";  // levels keep their own (preprocessed) grids
    app::set_math_threads(threads);
    for (int64_t p : patch)
      if (p < 1) throw Error("--patch: sizes must be positive");
    Backbone b = load_backbone(weights, raw, modality, device);
    const int scales = b.fpn->config().scales;
    std::vector<int> levels;
    if (levels_arg == "all") {
      for (int i = 0; i < scales; ++i) levels.push_back(i);
    } else {
      std::stringstream ss(levels_arg);
      std::string t;
      while (std::getline(ss, t, ',')) {
        int l = -1;
        try { l = std::stoi(t); } catch (const std::exception&) {}
        if (l < 0 || l >= scales || std::to_string(l) != t)
          throw Error("--levels " + levels_arg + ": \"" + t + "\" is not a level of this " + std::to_string(scales) +
                      "-scale backbone (0.." + std::to_string(scales - 1) + ")");
        if (std::find(levels.begin(), levels.end(), l) != levels.end())
          throw Error("--levels " + levels_arg + ": level " + t + " twice");
        levels.push_back(l);
      }
    }
    b.preprocess.min_size = {patch[0], patch[1], patch[2]};
    std::vector<std::string> inputs =
        fs::is_regular_file(input) ? std::vector<std::string>{input} : data::find_nifti_files(input);
    inputs.erase(std::remove_if(inputs.begin(), inputs.end(), [](const std::string& p) {
                   return p.find("/labelsTr/") != std::string::npos || p.find("/labelsTs/") != std::string::npos;
                 }), inputs.end());
    if (inputs.empty()) throw Error(input + ": no NIfTI images");
    fs::create_directories(out);
    std::cout << "backbone " << weights << ": FPN3d base " << b.fpn->config().base << ", " << scales << " scales, "
              << (b.proj_w.empty() ? "raw channels" : "balanced projections") << "; preprocessing "
              << b.preprocess.key() << "\n";
    for (const std::string& in : inputs) {
      data::NiftiImage img = data::read_nifti(in);
      data::PreprocessedVolume pv = data::preprocess(img, b.preprocess);
      eval::SlidingWindowOptions so;
      so.patch = {patch[0], patch[1], patch[2]};
      so.batch = window_batch;
      Tensor feats = eval::sliding_window(
          pv.image, [&](const Tensor& x) { return patch_features(b, levels, x, device); }, so);
      const std::string name = eval::case_name_of(in);
      std::vector<std::pair<std::string, std::vector<data::Volume>>> maps;  // (name, channels)
      int64_t k0 = 0;
      if (per_level) {
        for (int i : levels) {
          maps.push_back({"level_" + std::to_string(i), subsample(feats, k0, level_channels(b, i), i, pv.image)});
          k0 += level_channels(b, i);
        }
      } else {
        std::vector<data::Volume> ch;
        for (int64_t c = 0; c < feats.size(0); ++c)
          ch.push_back(grid == "input" ? data::restore_image(channel(feats, c, pv.image), pv.record)
                                       : channel(feats, c, pv.image));
        maps.push_back({"features", std::move(ch)});
      }
      const bool on_input = grid == "input";
      std::map<std::string, std::string> meta{{"source", in},
                                              {"weights", weights},
                                              {"grid", grid},
                                              {"levels", nlohmann::json(levels).dump()},
                                              {"preprocessing", b.preprocess.key()},
                                              {"projection", b.proj_w.empty() ? "raw" : "balanced"}};
      std::string written;
      for (const auto& [mname, vols] : maps) {
        if (format == "safetensors") continue;
        const std::string path =
            (fs::path(out) / (name + (mname == "features" ? "_features" : "_level" + mname.substr(6)) + ".nii.gz"))
                .string();
        std::vector<const data::Volume*> ptrs;
        for (const auto& v : vols) ptrs.push_back(&v);
        data::write_nifti_channels(path, ptrs, data::kFloat32,
                                   on_input && mname == "features" ? &pv.record.original : nullptr);
        written += (written.empty() ? "" : " ") + path + " (" + std::to_string(vols.size()) + " channels)";
      }
      if (format == "safetensors") {
        const std::string path = (fs::path(out) / (name + "_features.safetensors")).string();
        write_safetensors_features(path, maps, meta);
        written = path;
      }
      if (!no_png) {
        const std::string png = (fs::path(out) / (name + "_pca.png")).string();
        write_pca_png(png, feats, pv.image, body_slice(pv.body));
        written += " + " + png;
      }
      std::cout << in << " -> " << written << "\n";
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "features: error: " << e.what() << std::endl;
    return 1;
  }
}
