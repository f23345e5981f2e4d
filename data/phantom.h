// Synthetic abdominal phantoms: a CT in Hounsfield units (or an MRI-like image in arbitrary units with a
// smooth bias field) plus a label map in BTCV numbering. Seeded and deterministic: case i of seed s is
// always the same volume.
#pragma once
#include <array>
#include <string>
#include <vector>

#include "data/preprocess.h"
#include "data/volume.h"

namespace hdssl::data {

// BTCV label names, index = label value (0 = background).
const std::vector<std::string>& btcv_label_names();

struct PhantomConfig {
  Modality modality = Modality::CT;
  std::array<double, 3> spacing{1.0, 1.0, 2.5};   // mm
  std::array<double, 3> fov{360.0, 280.0, 240.0};  // mm (x, y, z)
  bool lps_file_axes = true;  // store voxels in LPS order (as DICOM converters do) instead of RAS
};

struct Phantom {
  Volume image;   // HU (CT) or arbitrary units (MRI)
  Volume labels;  // 0..13, same grid
};

Phantom make_phantom(const PhantomConfig& cfg, uint64_t seed, uint64_t case_index);

// Writes an nnU-Net v2 raw folder: dataset.json, imagesTr/phantom_XXX_0000.nii.gz, labelsTr/phantom_XXX.nii.gz.
// With unlabeled, only the images, as DIR/phantom_XXX.nii.gz. Returns the written image paths.
void write_phantom_dataset_json(const std::string& dir, int cases, uint64_t seed, const PhantomConfig& cfg);
// Writes case i (labeled: imagesTr/ + labelsTr/; unlabeled: DIR/phantom_XXX.nii.gz); returns the image path.
std::string write_phantom_case(const std::string& dir, int i, uint64_t seed, const PhantomConfig& cfg, bool unlabeled);
std::vector<std::string> write_phantom_dataset(const std::string& dir, int cases, uint64_t seed, const PhantomConfig& cfg,
                                               bool unlabeled, int first_case = 0);

}  // namespace hdssl::data
