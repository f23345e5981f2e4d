// Expected vs. actual preprocessing of a checkpoint: parse the recorded key, list what differs.
#include "data/preprocess_compat.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <vector>

namespace hdssl::data {
namespace {

std::vector<double> numbers(const std::string& field, size_t n, const std::string& what, const std::string& name) {
  std::vector<double> out;
  std::stringstream ss(field);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      out.push_back(std::stod(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      throw DataError(what + ": preprocessing field " + name + "=" + field + " is not a list of numbers");
    }
  }
  if (out.size() != n)
    throw DataError(what + ": preprocessing field " + name + "=" + field + " needs " + std::to_string(n) + " numbers");
  return out;
}

bool same(double a, double b) { return std::abs(a - b) <= 1e-6 * std::max({1.0, std::abs(a), std::abs(b)}); }

std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", v);
  return b;
}
std::string mod_name(Modality m) { return m == Modality::CT ? "ct" : "mri"; }

}  // namespace

PreprocessConfig parse_preprocess_key(const std::string& key, const std::string& what) {
  std::stringstream ss(key);
  std::string tok;
  std::map<std::string, std::string> f;
  ss >> tok;
  if (tok != "v1") throw DataError(what + ": preprocessing \"" + key + "\" is not a version-1 hdssl preprocessing key");
  while (ss >> tok) {
    auto eq = tok.find('=');
    if (eq == std::string::npos) throw DataError(what + ": preprocessing token \"" + tok + "\" has no '='");
    f[tok.substr(0, eq)] = tok.substr(eq + 1);
  }
  for (const char* k : {"mod", "sp", "ct", "mri", "min", "body"})
    if (!f.count(k)) throw DataError(what + ": preprocessing \"" + key + "\" lacks " + k + "=");
  PreprocessConfig c;
  if (f["mod"] == "ct") c.modality = Modality::CT;
  else if (f["mod"] == "mri") c.modality = Modality::MRI;
  else throw DataError(what + ": preprocessing modality \"" + f["mod"] + "\" is neither ct nor mri");
  auto sp = numbers(f["sp"], 3, what, "sp");
  c.spacing = {sp[0], sp[1], sp[2]};
  auto ct = numbers(f["ct"], 3, what, "ct");
  c.ct_clip_lo = ct[0], c.ct_clip_hi = ct[1], c.ct_crop_hu = ct[2];
  auto mri = numbers(f["mri"], 3, what, "mri");
  c.mri_pct_lo = mri[0], c.mri_pct_hi = mri[1], c.mri_crop = mri[2];
  auto mn = numbers(f["min"], 3, what, "min");
  c.min_size = {int64_t(mn[0]), int64_t(mn[1]), int64_t(mn[2])};
  c.body_threshold = numbers(f["body"], 1, what, "body")[0];
  return c;
}

std::optional<PreprocessConfig> expected_preprocessing(const std::map<std::string, std::string>& metadata,
                                                        const std::string& what) {
  auto it = metadata.find("preprocessing");
  if (it == metadata.end() || it->second.empty()) return std::nullopt;
  return parse_preprocess_key(it->second, what);
}

std::string preprocess_differences(const PreprocessConfig& e, const PreprocessConfig& r) {
  std::vector<std::string> d;
  if (e.modality != r.modality)
    d.push_back("modality: the weights expect " + mod_name(e.modality) + ", this run uses " + mod_name(r.modality));
  if (!same(e.spacing[0], r.spacing[0]) || !same(e.spacing[1], r.spacing[1]) || !same(e.spacing[2], r.spacing[2]))
    d.push_back("spacing: the weights expect " + num(e.spacing[0]) + " x " + num(e.spacing[1]) + " x " +
                num(e.spacing[2]) + " mm, this run uses " + num(r.spacing[0]) + " x " + num(r.spacing[1]) + " x " +
                num(r.spacing[2]) + " mm");
  if (e.modality == r.modality && e.modality == Modality::CT &&
      (!same(e.ct_clip_lo, r.ct_clip_lo) || !same(e.ct_clip_hi, r.ct_clip_hi)))
    d.push_back("CT window: the weights expect [" + num(e.ct_clip_lo) + ", " + num(e.ct_clip_hi) +
                "] HU, this run uses [" + num(r.ct_clip_lo) + ", " + num(r.ct_clip_hi) + "] HU");
  if (e.modality == r.modality && e.modality == Modality::MRI &&
      (!same(e.mri_pct_lo, r.mri_pct_lo) || !same(e.mri_pct_hi, r.mri_pct_hi)))
    d.push_back("MRI clip percentiles: the weights expect " + num(e.mri_pct_lo) + " / " + num(e.mri_pct_hi) +
                ", this run uses " + num(r.mri_pct_lo) + " / " + num(r.mri_pct_hi));
  std::string out;
  for (const auto& s : d) out += (out.empty() ? "" : "; ") + s;
  return out;
}

std::string preprocess_mismatch_message(const std::string& weights_path, const PreprocessConfig& expected,
                                        const PreprocessConfig& run, const std::string& override_flag) {
  const std::string d = preprocess_differences(expected, run);
  if (d.empty()) return "";
  return weights_path + ": " + d + "; preprocess as the weights expect, or pass " + override_flag +
         " to use them anyway";
}

}  // namespace hdssl::data
