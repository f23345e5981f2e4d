// The CT and MRI presets of docs/method.md section 5, the body mask, and the record that maps a prediction on
// the preprocessed grid back to the file's original grid and orientation.
//
// Pipeline: file axes -> RAS (permute/flip) -> resample (trilinear) -> intensity (CT: clip [-1350, 1000] HU;
// MRI: clip to percentiles) and scale to [0, 1] -> crop to the box of "tissue" voxels (CT: > -500 HU;
// MRI: > 0.3 after scaling) -> grow the box to at least `min_size`, padding with 0 where the volume is
// smaller -> body mask.
#pragma once
#include <array>
#include <string>

#include "data/nifti.h"
#include "data/orient.h"
#include "data/resample.h"
#include "data/volume.h"

namespace hdssl::data {

enum class Modality { CT, MRI };

struct PreprocessConfig {
  Modality modality = Modality::CT;
  std::array<double, 3> spacing{1.0, 1.0, 2.0};  // target mm (CT 1x1x2, MRI 1.5 isotropic)
  double ct_clip_lo = -1350, ct_clip_hi = 1000;  // HU window scaled to [0, 1] (part of key(): the cache)
  double ct_crop_hu = -500;                      // crop box: voxels above this HU
  double mri_pct_lo = 0.01, mri_pct_hi = 99.9;   // percentiles (in percent) for the MRI clip
  double mri_crop = 0.3;                         // crop box: scaled voxels above this
  Dims3 min_size{128, 128, 32};                  // grow (then pad) the crop box to at least this
  double body_threshold = 0.3;                   // body mask: scaled intensity >= this, holes filled

  static PreprocessConfig ct() { return PreprocessConfig{}; }
  static PreprocessConfig mri() {
    PreprocessConfig c;
    c.modality = Modality::MRI;
    c.spacing = {1.5, 1.5, 1.5};
    return c;
  }
  // The CT window by name: "paper" = [-1350, 1000] HU (the paper's text), "program" = [-175, 250] HU (the
  // abdomen window of the published program's preprocess_pretraining_data.py), or "LO,HI" in HU.
  // Throws DataError naming the spec when it is none of these or LO >= HI.
  void set_ct_window(const std::string& spec);
  // Whether ct_clip_lo/hi is the paper's window (key() and config records use the numbers themselves).
  static constexpr double kPaperCtWindow[2] = {-1350, 1000}, kProgramCtWindow[2] = {-175, 250};
  // A string naming every setting (used in cache keys).
  std::string key() const;
};

// Everything needed to go from the preprocessed grid back to the original file grid.
struct PreprocessRecord {
  NiftiGeometry original;          // the file's geometry (write outputs with it)
  OrientRecord orient;             // file axes -> RAS
  Dims3 ras_dims{0, 0, 0};         // after reorientation
  std::array<double, 3> ras_spacing{1, 1, 1};
  Dims3 resampled_dims{0, 0, 0};   // after resampling
  std::array<double, 3> spacing{1, 1, 1};  // target spacing
  std::array<int64_t, 3> crop_begin{0, 0, 0};  // first voxel of the final grid in the resampled grid (< 0: padded)
  Dims3 dims{0, 0, 0};             // final grid
};

struct PreprocessedVolume {
  std::string source;  // the input file
  Volume image;        // [0, 1], RAS, target spacing, cropped/padded
  Mask body;           // body mask on the same grid
  PreprocessRecord record;
};

// Runs the preset on an image read from file (voxels in file axes).
PreprocessedVolume preprocess(const NiftiImage& img, const PreprocessConfig& cfg);
// Same reorientation, nearest resampling and crop for a label map of that image (file axes).
Volume preprocess_labels(const Volume& labels, const PreprocessRecord& rec);
// A label map on the preprocessed grid back to the original file grid (nearest), ready for write_label_nifti
// with rec.original. Voxels outside the crop become 0.
Volume restore_labels(const Volume& labels, const PreprocessRecord& rec);
// Same for a float image (e.g. a probability map): linear resampling back, `fill` outside the crop.
Volume restore_image(const Volume& image, const PreprocessRecord& rec, float fill = 0.f);

// Body mask: per axial (z) slice, voxels >= threshold plus everything not reachable from the slice border
// through voxels below it (flood fill of outside air; per slice so that lungs/bowel gas that open onto
// the top or bottom of a cropped volume still count as body).
Mask body_mask(const Volume& v, double threshold);

// Crop/pad: out voxel i = v[begin + i], `fill` outside v. The affine is shifted to match.
Volume crop_or_pad(const Volume& v, std::array<int64_t, 3> begin, Dims3 dims, float fill);

}  // namespace hdssl::data
