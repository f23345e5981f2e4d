// Preprocessed-volume cache. File layout: "HDSSLPV1", uint64 JSON length, JSON (key, source, record, dims,
// affine), then the float32 image and the uint8 body mask. The key inside is compared on load, so a hash
// collision or a stale entry can never be returned.
#include "data/cache.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

namespace hdssl::data {
namespace {

using json = nlohmann::json;

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) { h ^= c; h *= 1099511628211ULL; }
  return h;
}

std::string file_key(const std::string& file, const PreprocessConfig& cfg) {
  struct stat st;
  if (stat(file.c_str(), &st) != 0) return "";
  std::error_code ec;
  std::string abs = std::filesystem::absolute(file, ec).lexically_normal().string();
  return abs + "|" + std::to_string(st.st_size) + "|" + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec) + "|" + cfg.key();
}

json mat_json(const Mat44& m) {
  json j = json::array();
  for (auto& r : m) j.push_back({r[0], r[1], r[2], r[3]});
  return j;
}
Mat44 json_mat(const json& j) {
  Mat44 m;
  for (int i = 0; i < 4; ++i) for (int k = 0; k < 4; ++k) m[size_t(i)][size_t(k)] = j[size_t(i)][size_t(k)].get<double>();
  return m;
}

json record_json(const PreprocessRecord& r) {
  const NiftiGeometry& g = r.original;
  json jg = {{"dims", g.dims}, {"pixdim", {g.pixdim[0], g.pixdim[1], g.pixdim[2], g.pixdim[3]}}, {"qform_code", g.qform_code},
             {"sform_code", g.sform_code}, {"quatern", {g.quatern[0], g.quatern[1], g.quatern[2]}},
             {"qoffset", {g.qoffset[0], g.qoffset[1], g.qoffset[2]}}, {"xyzt_units", g.xyzt_units}, {"affine", mat_json(g.affine)}};
  json srow = json::array();
  for (auto& row : g.srow) srow.push_back({row[0], row[1], row[2], row[3]});
  jg["srow"] = srow;
  return {{"original", jg}, {"perm", r.orient.perm}, {"flip", r.orient.flip}, {"old_dims", r.orient.old_dims},
          {"ras_dims", r.ras_dims}, {"ras_spacing", r.ras_spacing}, {"resampled_dims", r.resampled_dims},
          {"spacing", r.spacing}, {"crop_begin", r.crop_begin}, {"dims", r.dims}};
}

PreprocessRecord json_record(const json& j) {
  PreprocessRecord r;
  const json& jg = j["original"];
  NiftiGeometry& g = r.original;
  g.dims = jg["dims"].get<Dims3>();
  for (int i = 0; i < 4; ++i) g.pixdim[i] = jg["pixdim"][size_t(i)].get<double>();
  g.qform_code = jg["qform_code"]; g.sform_code = jg["sform_code"];
  for (int i = 0; i < 3; ++i) { g.quatern[i] = jg["quatern"][size_t(i)]; g.qoffset[i] = jg["qoffset"][size_t(i)]; }
  for (int i = 0; i < 3; ++i) for (int k = 0; k < 4; ++k) g.srow[i][k] = jg["srow"][size_t(i)][size_t(k)];
  g.xyzt_units = jg["xyzt_units"];
  g.affine = json_mat(jg["affine"]);
  r.orient.perm = j["perm"].get<std::array<int, 3>>();
  r.orient.flip = j["flip"].get<std::array<bool, 3>>();
  r.orient.old_dims = j["old_dims"].get<Dims3>();
  r.ras_dims = j["ras_dims"].get<Dims3>();
  r.ras_spacing = j["ras_spacing"].get<std::array<double, 3>>();
  r.resampled_dims = j["resampled_dims"].get<Dims3>();
  r.spacing = j["spacing"].get<std::array<double, 3>>();
  r.crop_begin = j["crop_begin"].get<std::array<int64_t, 3>>();
  r.dims = j["dims"].get<Dims3>();
  return r;
}

}  // namespace

void save_preprocessed(const std::string& path, const PreprocessedVolume& v, const std::string& key) {
  json j = {{"key", key}, {"source", v.source}, {"record", record_json(v.record)}, {"dims", v.image.dims},
            {"affine", mat_json(v.image.affine)}};
  std::string meta = j.dump();
  static std::atomic<uint64_t> counter{0};
  std::string tmp = path + ".tmp." + std::to_string(getpid()) + "." + std::to_string(counter++);
  {
    std::ofstream f(tmp, std::ios::binary);
    uint64_t n = meta.size();
    f.write("HDSSLPV1", 8);
    f.write(reinterpret_cast<const char*>(&n), 8);
    f.write(meta.data(), std::streamsize(n));
    f.write(reinterpret_cast<const char*>(v.image.data.data()), std::streamsize(v.image.data.size() * sizeof(float)));
    f.write(reinterpret_cast<const char*>(v.body.data.data()), std::streamsize(v.body.data.size()));
    f.close();  // the last buffer is written here: a full disk often shows only now
    if (!f) {
      const int err = errno;
      std::remove(tmp.c_str());
      throw DataError(path + ": cannot write cache entry (" + std::strerror(err) +
                      "); the previous entry, if any, is unchanged");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw DataError(path + ": cannot rename cache entry into place");
  }
}

std::optional<PreprocessedVolume> load_preprocessed_file(const std::string& path, const std::string& key) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return std::nullopt;
  try {
    char magic[8];
    uint64_t n = 0;
    if (!f.read(magic, 8) || std::string(magic, 8) != "HDSSLPV1" || !f.read(reinterpret_cast<char*>(&n), 8) || n > (1u << 24))
      return std::nullopt;
    std::string meta(size_t(n), '\0');
    if (!f.read(meta.data(), std::streamsize(n))) return std::nullopt;
    json j = json::parse(meta);
    if (j["key"].get<std::string>() != key) return std::nullopt;
    PreprocessedVolume v;
    v.source = j["source"];
    v.record = json_record(j["record"]);
    Dims3 d = j["dims"].get<Dims3>();
    if (d[0] <= 0 || d[1] <= 0 || d[2] <= 0 || d != v.record.dims) return std::nullopt;
    v.image = Volume(d);
    v.image.affine = json_mat(j["affine"]);
    v.image.spacing = affine_spacing(v.image.affine);
    v.body.dims = d;
    v.body.data.resize(size_t(v.image.numel()));
    if (!f.read(reinterpret_cast<char*>(v.image.data.data()), std::streamsize(v.image.data.size() * sizeof(float))) ||
        !f.read(reinterpret_cast<char*>(v.body.data.data()), std::streamsize(v.body.data.size())))
      return std::nullopt;
    char extra;
    if (f.read(&extra, 1)) return std::nullopt;  // longer than it should be
    return v;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::string cache_entry_path(const std::string& dir, const std::string& file, const PreprocessConfig& cfg) {
  std::string key = file_key(file, cfg);
  if (key.empty()) return "";
  char name[32];
  std::snprintf(name, sizeof name, "%016llx.hdpv", (unsigned long long)fnv1a(key));
  return (std::filesystem::path(dir) / name).string();
}

std::optional<PreprocessedVolume> cache_load(const std::string& dir, const std::string& file, const PreprocessConfig& cfg) {
  if (dir.empty()) return std::nullopt;
  std::string p = cache_entry_path(dir, file, cfg);
  if (p.empty()) return std::nullopt;
  auto v = load_preprocessed_file(p, file_key(file, cfg));
  if (v) v->source = file;
  return v;
}

void cache_store(const std::string& dir, const std::string& file, const PreprocessConfig& cfg, const PreprocessedVolume& v) {
  if (dir.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw DataError(dir + ": cannot create cache folder: " + ec.message());
  std::string p = cache_entry_path(dir, file, cfg);
  if (!p.empty()) save_preprocessed(p, v, file_key(file, cfg));
}

}  // namespace hdssl::data
