// From a trained evaluation checkpoint to label maps: what the checkpoint says about the model and the
// preprocessing, probabilities of a volume (sliding window, averaged over several models such as the
// folds of a run), and one input file to a label-map NIfTI in the input's own grid plus a PNG overlay.
//
// Label rule (also in sliding_window.h): a voxel takes the class with the highest sigmoid probability
// among those above 0.5, else background.
#pragma once
#include <array>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/preprocess.h"
#include "models/segmentation.h"

namespace hdssl::eval {

// Everything needed to rebuild and apply a trained segmenter; stored as JSON in the checkpoint's
// metadata under "hdssl.segmenter" and in the run's config.json.
struct SegmenterMeta {
  std::string mode = "linear";
  models::SegmenterConfig model;
  std::vector<std::string> labels;          // names of classes 1..K
  data::Dims3 patch{128, 128, 32};
  data::PreprocessConfig preprocess;        // modality, spacing, windows, min_size (= patch)
};
nlohmann::json meta_to_json(const SegmenterMeta& m);
SegmenterMeta meta_from_json(const nlohmann::json& j);

// Builds the segmenter of an evaluation checkpoint (hdssl.format = hdssl.segment) and loads its
// weights strictly; the model is in eval mode on `device`.
std::unique_ptr<models::Segmenter> load_segmenter(const std::string& path, Device device, SegmenterMeta* meta);

// Class probabilities [K, X, Y, Z] (CPU, float32) of a preprocessed image: sliding window with 50 %
// overlap, sigmoid, averaged over `nets` (each in eval mode, no graph recorded).
Tensor predict_probabilities(const std::vector<models::Segmenter*>& nets, const data::Volume& image, data::Dims3 patch,
                             int window_batch, Device device);

struct PredictResult {
  std::string label_path, png_path;
  data::Dims3 dims{0, 0, 0};
};
// Reads `input`, preprocesses it as the model was trained, predicts, maps the labels back to the file's
// grid and writes OUT_DIR/<name>.nii.gz (uint8, the input's qform/sform) where <name> is the input's
// file name without extension and without nnU-Net's channel suffix "_0000"; with `png`, also
// OUT_DIR/<name>.png: the axial slice (RAS grid) with the most foreground, image and overlay.
PredictResult predict_file(const std::string& input, const std::string& out_dir, const std::vector<models::Segmenter*>& nets,
                           const SegmenterMeta& meta, int window_batch, Device device, bool png);

// The case name of an image file: "dir/case_0000.nii.gz" -> "case".
std::string case_name_of(const std::string& path);

}  // namespace hdssl::eval
