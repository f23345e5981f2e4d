// Shared helpers for the data tests: small phantoms and temporary folders.
#pragma once
#include <filesystem>
#include <string>

#include "data/phantom.h"
#include "data/preprocess.h"

namespace hdssl::data::test {

// A fresh empty folder under the build tree, unique per test name.
inline std::string temp_dir(const std::string& name) {
  auto p = std::filesystem::path(HDSSL_BINARY_DIR) / "tests_tmp" / name;
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p.string();
}

// A coarse CT phantom (3 x 3 x 5 mm) that preprocesses in well under a second.
inline PhantomConfig small_phantom_config() {
  PhantomConfig c;
  c.spacing = {3.0, 3.0, 5.0};
  return c;
}

inline NiftiImage as_nifti(const Volume& v, const std::string& name) {
  NiftiImage img;
  img.volume = v;
  img.info.path = name;
  img.info.geom.dims = v.dims;
  img.info.geom.affine = v.affine;
  return img;
}

// A preprocessed phantom at 3 x 3 x 5 mm, grown to at least `min_size`.
inline PreprocessedVolume small_preprocessed(uint64_t case_index, Dims3 min_size = {32, 32, 16}) {
  Phantom ph = make_phantom(small_phantom_config(), 7, case_index);
  PreprocessConfig cfg = PreprocessConfig::ct();
  cfg.spacing = {3.0, 3.0, 5.0};
  cfg.min_size = min_size;
  return preprocess(as_nifti(ph.image, "phantom" + std::to_string(case_index)), cfg);
}

}  // namespace hdssl::data::test
