// Folder and labeled-dataset loading.
#include "data/dataset.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "data/cache.h"
#include "data/nifti.h"

namespace hdssl::data {
namespace fs = std::filesystem;

std::vector<std::string> find_nifti_files(const std::string& dir) {
  std::error_code ec;
  if (fs::is_regular_file(dir, ec)) return {dir};
  if (!fs::is_directory(dir, ec)) throw DataError(dir + ": no such folder");
  std::vector<std::string> out;
  for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (it->is_directory(ec) && (name == "labelsTr" || name == "labelsTs")) {
      it.disable_recursion_pending();  // label maps of an nnU-Net / Decathlon folder are not images
      continue;
    }
    if (it->is_regular_file(ec) && is_nifti_name(it->path().string())) out.push_back(it->path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

PreprocessedVolume load_preprocessed(const std::string& file, const PreprocessConfig& cfg, const std::string& cache_dir, bool* hit) {
  if (hit) *hit = false;
  if (!cache_dir.empty()) {
    if (auto v = cache_load(cache_dir, file, cfg)) {
      if (hit) *hit = true;
      return std::move(*v);
    }
  }
  PreprocessedVolume v = preprocess(read_nifti(file), cfg);
  if (!cache_dir.empty()) cache_store(cache_dir, file, cfg, v);
  return v;
}

std::vector<PreprocessedVolume> load_folder(const std::string& dir, const PreprocessConfig& cfg, const std::string& cache_dir,
                                            LoadReport* report, int threads, bool verbose) {
  std::vector<std::string> files = find_nifti_files(dir);
  if (files.empty()) throw DataError(dir + ": no NIfTI files (.nii, .nii.gz, .hdr) found");
  std::vector<std::optional<PreprocessedVolume>> result(files.size());
  std::vector<std::string> errors(files.size());
  std::vector<char> hits(files.size(), 0);
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next++) < files.size();) {
      try {
        bool hit = false;
        result[i] = load_preprocessed(files[i], cfg, cache_dir, &hit);
        hits[i] = hit;
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < std::max(1, threads); ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  std::vector<PreprocessedVolume> out;
  LoadReport rep;
  for (size_t i = 0; i < files.size(); ++i) {
    if (result[i]) {
      out.push_back(std::move(*result[i]));
      rep.loaded.push_back(files[i]);
      rep.cache_hits += hits[i];
    } else {
      rep.refused.emplace_back(files[i], errors[i]);
      if (verbose) std::fprintf(stderr, "skipping %s\n", errors[i].c_str());
    }
  }
  if (report) *report = rep;
  if (out.empty())
    throw DataError(dir + ": none of the " + std::to_string(files.size()) + " NIfTI files is usable (first problem: " +
                    rep.refused.front().second + ")");
  return out;
}

std::vector<PreprocessedVolume> phantom_volumes(int cases, uint64_t seed, const PhantomConfig& phantom,
                                                const PreprocessConfig& cfg, int threads) {
  std::vector<PreprocessedVolume> out(size_t(std::max(0, cases)));
  std::atomic<int> next{0};
  std::mutex err_mu;
  std::string err;
  auto work = [&] {
    for (int i; (i = next++) < cases;) {
      try {
        Phantom ph = make_phantom(phantom, seed, uint64_t(i));
        NiftiImage img;
        img.info.path = "phantom_" + std::to_string(i) + " (seed " + std::to_string(seed) + ")";
        img.info.geom.dims = ph.image.dims;
        img.info.geom.affine = ph.image.affine;
        img.volume = std::move(ph.image);
        out[size_t(i)] = preprocess(img, cfg);
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> l(err_mu);
        err = e.what();
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < std::max(1, threads); ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (!err.empty()) throw DataError("synthetic phantoms: " + err);
  return out;
}

namespace {

nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw DataError(path + ": cannot open (a dataset folder needs dataset.json)");
  try {
    return nlohmann::json::parse(f);
  } catch (const std::exception& e) {
    throw DataError(path + ": invalid JSON: " + e.what());
  }
}

Modality modality_of(const std::string& name) {
  std::string n = name;
  std::transform(n.begin(), n.end(), n.begin(), ::tolower);
  return n == "ct" ? Modality::CT : Modality::MRI;
}

void set_label(LabeledDataset& ds, int64_t value, const std::string& name, const std::string& where) {
  if (value < 0 || value > 65535) throw DataError(where + ": labels: value " + std::to_string(value) + " out of range");
  if (ds.label_names.size() <= size_t(value)) ds.label_names.resize(size_t(value) + 1);
  ds.label_names[size_t(value)] = name;
}

}  // namespace

LabeledDataset read_labeled_dataset(const std::string& root) {
  LabeledDataset ds;
  ds.root = root;
  std::string jpath = (fs::path(root) / "dataset.json").string();
  nlohmann::json j = read_json(jpath);
  if (!j.contains("labels") || !j["labels"].is_object()) throw DataError(jpath + ": labels: missing or not an object");
  try {
    if (j.contains("training") && j["training"].is_array()) {
      // Medical Segmentation Decathlon: labels {"0": "background", ...}, training [{"image", "label"}].
      ds.layout = "msd";
      for (auto& [k, v] : j["labels"].items()) {
        size_t used = 0;
        int64_t value = std::stoll(k, &used);  // out of range: caught below like a non-integer key
        if (used != k.size()) throw std::invalid_argument(k);
        set_label(ds, value, v.get<std::string>(), jpath);
      }
      if (j.contains("modality")) ds.modality = modality_of(j["modality"].value("0", "CT"));
      for (const auto& e : j["training"]) {
        LabeledCase c;
        auto rel = [&](const std::string& p) { return (fs::path(root) / fs::path(p)).lexically_normal().string(); };
        c.image = rel(e.at("image").get<std::string>());
        c.label = rel(e.at("label").get<std::string>());
        std::string stem = fs::path(c.image).filename().string();
        c.id = stem.substr(0, stem.find('.'));
        ds.cases.push_back(c);
      }
    } else {
      // nnU-Net v2: labels {"background": 0, ...}, imagesTr/CASE_0000<ending>, labelsTr/CASE<ending>.
      ds.layout = "nnunetv2";
      for (auto& [k, v] : j["labels"].items()) {
        if (v.is_array()) throw DataError(jpath + ": labels: region-based label '" + k + "' is not supported");
        // get<int64_t> of a float or a huge number is undefined behaviour in nlohmann::json: check first.
        if (!v.is_number_integer())
          throw DataError(jpath + ": labels: value of '" + k + "' is not an integer: " + v.dump());
        set_label(ds, v.is_number_unsigned() && v.get<uint64_t>() > 65535 ? 65536 : v.get<int64_t>(), k, jpath);
      }
      if (j.contains("channel_names")) {
        if (j["channel_names"].size() != 1) throw DataError(jpath + ": channel_names: only single-channel datasets are supported");
        ds.modality = modality_of(j["channel_names"].begin()->get<std::string>());
      }
      std::string ending = j.value("file_ending", ".nii.gz");
      fs::path images = fs::path(root) / "imagesTr", labels = fs::path(root) / "labelsTr";
      std::error_code ec;
      if (!fs::is_directory(images, ec)) throw DataError(images.string() + ": missing imagesTr folder");
      for (auto& e : fs::directory_iterator(images)) {
        std::string name = e.path().filename().string();
        std::string suffix = "_0000" + ending;
        if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
        LabeledCase c;
        c.id = name.substr(0, name.size() - suffix.size());
        c.image = e.path().string();
        c.label = (labels / (c.id + ending)).string();
        ds.cases.push_back(c);
      }
    }
  } catch (const nlohmann::json::exception& e) {
    throw DataError(jpath + ": " + e.what());
  } catch (const std::logic_error&) {  // std::stoll: invalid_argument or out_of_range
    throw DataError(jpath + ": labels: keys must be integers in the Decathlon layout");
  }
  std::sort(ds.cases.begin(), ds.cases.end(), [](const LabeledCase& a, const LabeledCase& b) { return a.id < b.id; });
  if (ds.cases.empty()) throw DataError(root + ": no training cases found");
  for (const auto& c : ds.cases) {
    std::error_code ec;
    // Named from the dataset's own file too: a Decathlon entry may be an absolute path outside the folder.
    if (!fs::exists(c.image, ec))
      throw DataError(jpath + ": image of case " + c.id + " is missing: " + c.image);
    if (!fs::exists(c.label, ec))
      throw DataError(jpath + ": label map of case " + c.id + " is missing: " + c.label);
  }
  return ds;
}

PreprocessedCase load_labeled_case(const LabeledDataset& ds, size_t i, const PreprocessConfig& cfg, const std::string& cache_dir) {
  if (i >= ds.cases.size()) throw DataError(ds.root + ": case index out of range");
  const LabeledCase& c = ds.cases[i];
  NiftiImage lab = read_nifti(c.label);
  NiftiInfo img_info = read_nifti_header(c.image);
  if (lab.info.geom.dims != img_info.geom.dims)
    throw DataError(c.label + ": dims differ from the image " + c.image);
  double tol = 1e-3 * std::max({1.0, std::fabs(img_info.geom.affine[0][3]), std::fabs(img_info.geom.affine[1][3]), std::fabs(img_info.geom.affine[2][3])});
  for (int r = 0; r < 3; ++r)
    for (int k = 0; k < 4; ++k)
      if (std::fabs(lab.info.geom.affine[size_t(r)][size_t(k)] - img_info.geom.affine[size_t(r)][size_t(k)]) > (k == 3 ? tol : 1e-3))
        throw DataError(c.label + ": geometry (affine) differs from the image " + c.image);
  if (!nifti_type_is_integer(lab.info.datatype)) {
    for (float v : lab.volume.data)
      if (v != std::floor(v)) throw DataError(c.label + ": label map has a non-integer value " + std::to_string(v));
  }
  std::vector<int64_t> present = lab.info.stats.labels;
  if (present.empty()) {
    std::vector<char> seen(65536, 0);
    for (float v : lab.volume.data)
      if (v >= 0 && v < 65536) seen[size_t(v)] = 1;
      else throw DataError(c.label + ": label value " + std::to_string(v) + " is not declared in dataset.json");
    for (size_t k = 0; k < seen.size(); ++k) if (seen[k]) present.push_back(int64_t(k));
  }
  for (int64_t v : present)
    if (v < 0 || size_t(v) >= ds.label_names.size() || ds.label_names[size_t(v)].empty())
      throw DataError(c.label + ": label value " + std::to_string(v) + " is not declared in dataset.json");
  PreprocessedCase out;
  out.id = c.id;
  out.image = load_preprocessed(c.image, cfg, cache_dir);
  out.labels = preprocess_labels(lab.volume, out.image.record);
  return out;
}

}  // namespace hdssl::data
