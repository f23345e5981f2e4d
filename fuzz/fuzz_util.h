// Shared by the harnesses: a private scratch folder, whole-buffer file writes, and the one rule every
// harness checks. The readers take paths, so each input is written to a file first.
//
// The rule: a reader either returns or throws hdssl::Error (DataError, CheckpointError, ...) whose
// message names the file. Any other exception (a json::exception, std::out_of_range, bad_alloc) escaping
// is a finding, reported by aborting so libFuzzer keeps the input; ASan/UBSan report the rest.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>

#include "engine/check.h"

namespace hdssl::fuzz {

// A folder of this process, created once (under $TMPDIR, /tmp otherwise).
inline const std::string& scratch() {
  static const std::string dir = [] {
    auto p = std::filesystem::temp_directory_path() / ("hdssl_fuzz_" + std::to_string(::getpid()));
    std::filesystem::create_directories(p);
    return p.string();
  }();
  return dir;
}

inline void write_file(const std::string& path, const uint8_t* data, size_t size) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data), std::streamsize(size));
  if (!f) std::abort();  // the scratch disk is full: not the reader's fault, stop loudly
}

// Runs `read`; accepts a return or an hdssl::Error that names `name`; aborts on anything else.
template <class F>
void expect_clean(const std::string& name, F&& read) {
  try {
    read();
  } catch (const hdssl::Error& e) {
    if (std::string(e.what()).find(name) == std::string::npos) {
      std::fprintf(stderr, "refusal does not name %s: %s\n", name.c_str(), e.what());
      std::abort();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "escaped exception (not an hdssl::Error): %s\n", e.what());
    std::abort();
  }
}

}  // namespace hdssl::fuzz
