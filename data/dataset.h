// Datasets: a folder of NIfTI files for pretraining (searched recursively, bad files reported and skipped)
// and labeled datasets in the nnU-Net v2 raw layout or the Medical Segmentation Decathlon layout.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "data/phantom.h"
#include "data/preprocess.h"

namespace hdssl::data {

// NIfTI images under `dir`, recursively, sorted (.nii, .nii.gz, .hdr, .hdr.gz; .img files are reached
// through their .hdr). Folders named labelsTr or labelsTs are skipped, so an nnU-Net or Decathlon folder
// yields its images only. A file given instead of a folder is returned alone.
std::vector<std::string> find_nifti_files(const std::string& dir);

struct LoadReport {
  std::vector<std::string> loaded;
  std::vector<std::pair<std::string, std::string>> refused;  // file, reason
  int cache_hits = 0;
};

// Reads + preprocesses one file, through the cache when cache_dir is not empty.
PreprocessedVolume load_preprocessed(const std::string& file, const PreprocessConfig& cfg, const std::string& cache_dir = "",
                                     bool* cache_hit = nullptr);

// Every NIfTI file under `dir`: bad files are reported (stderr when verbose, and in `report`) and skipped;
// throws DataError naming the folder when none is usable. `threads` files are processed at once; the
// result is in sorted file order whatever the thread count.
std::vector<PreprocessedVolume> load_folder(const std::string& dir, const PreprocessConfig& cfg,
                                            const std::string& cache_dir = "", LoadReport* report = nullptr,
                                            int threads = 1, bool verbose = true);

// In-memory synthetic pretraining data (the built-in default when no folder is given): `cases` phantoms
// of `phantom` (seeded), preprocessed with `cfg`, `threads` at a time; same result for any thread count.
std::vector<PreprocessedVolume> phantom_volumes(int cases, uint64_t seed, const PhantomConfig& phantom,
                                                const PreprocessConfig& cfg, int threads = 1);

struct LabeledCase {
  std::string id, image, label;  // label may be empty for test cases
};

struct LabeledDataset {
  std::string root;
  std::string layout;                    // "nnunetv2" or "msd"
  Modality modality = Modality::CT;      // from channel_names / modality "0"
  std::vector<std::string> label_names;  // index = label value; "" for undeclared gaps
  std::vector<LabeledCase> cases;        // training cases, sorted by id
};

// Reads dataset.json and lists the training cases; checks the files exist.
LabeledDataset read_labeled_dataset(const std::string& root);

struct PreprocessedCase {
  std::string id;
  PreprocessedVolume image;  // image.record maps back to the original grid (restore_labels + write_label_nifti)
  Volume labels;             // on the same grid as image.image (nearest resampling, same crop), values as floats
};

// Loads case i: checks image and label share geometry (dims and affine) and that every label value present is
// declared, then preprocesses both. Throws DataError naming the file and the problem.
PreprocessedCase load_labeled_case(const LabeledDataset& ds, size_t i, const PreprocessConfig& cfg,
                                   const std::string& cache_dir = "");

}  // namespace hdssl::data
