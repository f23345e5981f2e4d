// Checkpoint -> model, volume -> probabilities, file -> label-map NIfTI and PNG.
#include "eval/inference.h"

#include <filesystem>

#include "autograd/functions.h"
#include "data/nifti.h"
#include "data/png.h"
#include "models/checkpoint.h"
#include "eval/sliding_window.h"

namespace hdssl::eval {

namespace fs = std::filesystem;

nlohmann::json meta_to_json(const SegmenterMeta& m) {
  const data::PreprocessConfig& p = m.preprocess;
  return {{"mode", m.mode},
          {"head", models::head_kind_name(m.model.head)},
          {"classes", m.model.classes},
          {"base", m.model.fpn.base},
          {"scales", m.model.fpn.scales},
          {"blocks", m.model.fpn.blocks},
          {"labels", m.labels},
          {"patch", m.patch},
          {"preprocess",
           {{"modality", p.modality == data::Modality::CT ? "ct" : "mri"},
            {"spacing", p.spacing},
            {"ct_clip", {p.ct_clip_lo, p.ct_clip_hi}},
            {"ct_crop_hu", p.ct_crop_hu},
            {"mri_percentiles", {p.mri_pct_lo, p.mri_pct_hi}},
            {"mri_crop", p.mri_crop},
            {"min_size", p.min_size},
            {"body_threshold", p.body_threshold}}}};
}

SegmenterMeta meta_from_json(const nlohmann::json& j) {
  SegmenterMeta m;
  m.mode = j.at("mode").get<std::string>();
  m.model.head = models::parse_head_kind(j.at("head").get<std::string>());
  m.model.classes = j.at("classes").get<int>();
  m.model.fpn.base = j.at("base").get<int>();
  m.model.fpn.scales = j.at("scales").get<int>();
  m.model.fpn.blocks = j.at("blocks").get<int>();
  m.labels = j.at("labels").get<std::vector<std::string>>();
  m.patch = j.at("patch").get<data::Dims3>();
  const auto& p = j.at("preprocess");
  m.preprocess = p.at("modality").get<std::string>() == "ct" ? data::PreprocessConfig::ct() : data::PreprocessConfig::mri();
  m.preprocess.spacing = p.at("spacing").get<std::array<double, 3>>();
  m.preprocess.ct_clip_lo = p.at("ct_clip")[0];
  m.preprocess.ct_clip_hi = p.at("ct_clip")[1];
  m.preprocess.ct_crop_hu = p.at("ct_crop_hu");
  m.preprocess.mri_pct_lo = p.at("mri_percentiles")[0];
  m.preprocess.mri_pct_hi = p.at("mri_percentiles")[1];
  m.preprocess.mri_crop = p.at("mri_crop");
  m.preprocess.min_size = p.at("min_size").get<data::Dims3>();
  m.preprocess.body_threshold = p.at("body_threshold");
  return m;
}

std::unique_ptr<models::Segmenter> load_segmenter(const std::string& path, Device device, SegmenterMeta* meta) {
  models::SafeTensors st = models::read_safetensors(path);
  auto it = st.metadata.find("hdssl.segmenter");
  if (it == st.metadata.end())
    throw models::CheckpointError(path + ": no hdssl.segmenter metadata (not written by ./evaluate)");
  SegmenterMeta m;
  try {
    m = meta_from_json(nlohmann::json::parse(it->second));
  } catch (const std::exception& e) {
    throw models::CheckpointError(path + ": bad hdssl.segmenter metadata: " + e.what());
  }
  Rng rng(0);
  auto net = std::make_unique<models::Segmenter>(m.model, rng);
  models::load_module_state(*net, st, "", true, {"optimizer."});
  net->to(device);
  net->train(false);
  if (meta) *meta = m;
  return net;
}

Tensor predict_probabilities(const std::vector<models::Segmenter*>& nets, const data::Volume& image, data::Dims3 patch,
                             int window_batch, Device device) {
  HDSSL_CHECK(!nets.empty()) << "predict: no model";
  SlidingWindowOptions o;
  o.patch = patch;
  o.batch = window_batch;
  NoGradGuard no_grad;
  Tensor sum;
  for (models::Segmenter* net : nets) {
    net->train(false);
    // The logits in float32 whatever the autocast precision (a bf16 forward's logits are widened).
    Tensor p = sliding_window(
        image, [&](const Tensor& x) { return ag::sigmoid(ag::cast(net->forward(x.to(device)), DType::F32)).value(); },
        o);
    if (!sum.defined()) {
      sum = p;
    } else {
      backend(Device::cpu()).axpby(1.0, sum, 1.0, p, sum);
    }
  }
  if (nets.size() > 1) backend(Device::cpu()).axpby(1.0 / double(nets.size()), sum, 0.0, sum, sum);
  return sum;
}

std::string case_name_of(const std::string& path) {
  std::string n = fs::path(path).filename().string();
  for (const char* ext : {".nii.gz", ".nii", ".hdr.gz", ".hdr"})
    if (n.size() > std::string(ext).size() && n.compare(n.size() - std::string(ext).size(), std::string::npos, ext) == 0) {
      n.resize(n.size() - std::string(ext).size());
      break;
    }
  if (n.size() > 5 && n.compare(n.size() - 5, 5, "_0000") == 0) n.resize(n.size() - 5);
  return n;
}

PredictResult predict_file(const std::string& input, const std::string& out_dir, const std::vector<models::Segmenter*>& nets,
                           const SegmenterMeta& meta, int window_batch, Device device, bool png) {
  data::NiftiImage img = data::read_nifti(input);
  data::PreprocessedVolume pv = data::preprocess(img, meta.preprocess);
  Tensor probs = predict_probabilities(nets, pv.image, meta.patch, window_batch, device);
  data::Volume labels = labels_from_probabilities(probs, pv.image, 0.5);
  data::Volume restored = data::restore_labels(labels, pv.record);
  fs::create_directories(out_dir);
  PredictResult r;
  const std::string name = case_name_of(input);
  r.label_path = (fs::path(out_dir) / (name + ".nii.gz")).string();
  r.dims = restored.dims;
  data::write_label_nifti(r.label_path, restored, &pv.record.original);
  if (png) {
    int64_t best_z = pv.image.dims[2] / 2, best = -1;
    for (int64_t z = 0; z < labels.dims[2]; ++z) {
      int64_t n = 0;
      for (int64_t x = 0; x < labels.dims[0]; ++x)
        for (int64_t y = 0; y < labels.dims[1]; ++y) n += labels.at(x, y, z) > 0;
      if (n > best) best = n, best_z = z;
    }
    // CT: the abdomen window [-175, 250] HU in the scaled [0, 1] units; MRI: the full range.
    double lo = 0, hi = 1;
    if (meta.preprocess.modality == data::Modality::CT) {
      const double span = meta.preprocess.ct_clip_hi - meta.preprocess.ct_clip_lo;
      lo = (-175 - meta.preprocess.ct_clip_lo) / span;
      hi = (250 - meta.preprocess.ct_clip_lo) / span;
    }
    r.png_path = (fs::path(out_dir) / (name + ".png")).string();
    data::write_axial_png(r.png_path, pv.image, best_z, lo, hi, &labels);
  }
  return r;
}

}  // namespace hdssl::eval
