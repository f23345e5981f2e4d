// A disk cache of preprocessed volumes, keyed by the input file (absolute path, size, modification time)
// and the preprocessing settings, so a second run over the same folder skips preprocessing.
// Safe for concurrent processes: entries are written to a unique temporary name and renamed into place
// (atomic on POSIX), and a reader that finds a damaged or mismatching entry just recomputes it.
#pragma once
#include <optional>
#include <string>

#include "data/preprocess.h"

namespace hdssl::data {

// The cache file name for (file, settings), or "" if the file cannot be stat'ed.
std::string cache_entry_path(const std::string& cache_dir, const std::string& file, const PreprocessConfig& cfg);
std::optional<PreprocessedVolume> cache_load(const std::string& cache_dir, const std::string& file, const PreprocessConfig& cfg);
void cache_store(const std::string& cache_dir, const std::string& file, const PreprocessConfig& cfg, const PreprocessedVolume& v);

// Serialisation used by the cache (also handy for tests): a self-describing binary blob.
void save_preprocessed(const std::string& path, const PreprocessedVolume& v, const std::string& key);
std::optional<PreprocessedVolume> load_preprocessed_file(const std::string& path, const std::string& key);

}  // namespace hdssl::data
