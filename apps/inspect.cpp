// inspect: one line (or one JSON object with --json) per NIfTI file: shape, spacing, orientation,
// datatype, scaling, intensity statistics of the scaled voxels and the label values of integer maps,
// or the reason the file is refused. Folders are searched recursively. Exit 0 if all load, 3 otherwise.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <iostream>

#include "data/nifti.h"

namespace fs = std::filesystem;
using namespace hdssl::data;

int main(int argc, char** argv) {
  CLI::App app{"inspect: summarise NIfTI files (shape, spacing, orientation, datatype, intensities, labels)"};
  std::vector<std::string> inputs;
  bool json = false;
  app.add_option("inputs", inputs, "NIfTI files or folders (searched recursively)")->required();
  app.add_flag("--json", json, "one JSON object per file (keys: file, ok, error, shape, spacing, orientation, datatype, min, max, mean, sum, labels)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // -h: 0; a bad command line: 2 (apps/README.md, exit codes)
  }

  std::vector<std::string> files;
  for (const auto& in : inputs) {
    std::error_code ec;
    if (fs::is_directory(in, ec)) {
      std::vector<std::string> found;
      for (auto it = fs::recursive_directory_iterator(in, ec); !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
        if (it->is_regular_file() && is_nifti_name(it->path().string())) found.push_back(it->path().string());
      std::sort(found.begin(), found.end());
      if (found.empty()) files.push_back(in);  // reported below as refused: "is a directory"
      files.insert(files.end(), found.begin(), found.end());
    } else {
      files.push_back(in);
    }
  }
  int bad = 0;
  for (const auto& f : files) {
    nlohmann::json j;
    j["file"] = f;
    try {
      std::error_code ec;
      if (fs::is_directory(f, ec)) throw DataError(f + ": a folder without NIfTI files (.nii, .nii.gz, .hdr)");
      NiftiImage img = read_nifti(f);
      const NiftiInfo& I = img.info;
      const auto& d = img.volume.dims;
      const std::array<double, 3> sp = img.volume.spacing;  // from the affine in use (sform, qform or pixdim)
      std::string orient = orientation_code(I.geom.affine);
      if (json) {
        j["ok"] = true;
        j["error"] = nullptr;
        j["shape"] = {d[0], d[1], d[2]};
        j["spacing"] = sp;
        j["orientation"] = orient;
        j["datatype"] = nifti_type_name(I.datatype);
        j["scl_slope"] = I.scl_slope;
        j["scl_inter"] = I.scl_inter;
        j["nifti_version"] = I.version;
        j["min"] = I.stats.min; j["max"] = I.stats.max; j["mean"] = I.stats.mean; j["sum"] = I.stats.sum;
        if (nifti_type_is_integer(I.datatype) && !I.scaled && !I.stats.too_many_labels) j["labels"] = I.stats.labels;
        else j["labels"] = nullptr;
        std::cout << j.dump() << "\n";
      } else {
        std::printf("%s: shape %lldx%lldx%lld, spacing %.6gx%.6gx%.6g mm, %s, %s%s, NIfTI-%d", f.c_str(), (long long)d[0],
                    (long long)d[1], (long long)d[2], sp[0], sp[1], sp[2], orient.c_str(), nifti_type_name(I.datatype),
                    I.byte_swapped ? " (byte-swapped)" : "", I.version);
        if (I.scaled) std::printf(", scaled x%.6g %+.6g", I.scl_slope, I.scl_inter);
        std::printf(", min %.6g max %.6g mean %.6g sum %.10g", I.stats.min, I.stats.max, I.stats.mean, I.stats.sum);
        if (nifti_type_is_integer(I.datatype) && !I.scaled) {
          if (I.stats.too_many_labels) std::printf(", labels: more than 1000 values");
          else {
            std::printf(", labels:");
            for (size_t k = 0; k < I.stats.labels.size() && k < 64; ++k) std::printf(" %lld", (long long)I.stats.labels[k]);
            if (I.stats.labels.size() > 64) std::printf(" ... (%zu values)", I.stats.labels.size());
          }
        }
        std::printf("\n");
      }
    } catch (const std::exception& e) {
      ++bad;
      if (json) {
        j["ok"] = false;
        j["error"] = e.what();
        std::cout << j.dump() << "\n";
      } else {
        std::printf("%s: REFUSED: %s\n", f.c_str(), e.what());
      }
    }
    std::fflush(stdout);
  }
  return bad ? 3 : 0;
}
