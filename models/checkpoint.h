// Checkpoints as .safetensors: 8-byte little-endian header length, a JSON header mapping each tensor name
// to {dtype, shape, data_offsets} plus a "__metadata__" map of strings, then the raw little-endian bytes.
// The same files load in Python (safetensors.torch.load_file) with the reference FPN3d's names.
//
// Writing is atomic: a temporary file in the same folder is written, flushed (fsync) and renamed over the
// target, so a kill at any moment leaves either the old or the new file, never a torn one. Reading
// validates the length, the JSON, every dtype/shape/offset and a CRC-32 of the data (kept in the
// metadata as "hdssl.crc32"), and names the file and the first thing that is wrong.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/tensor.h"
#include "models/module.h"

namespace hdssl::models {

struct StoredTensor {
  std::string name;
  std::string dtype;        // "F32", "F64", "I32" or "I64"
  Shape shape;
  std::vector<char> bytes;  // little-endian, numel * dtype size
};

struct SafeTensors {
  std::vector<StoredTensor> tensors;             // in file order
  std::map<std::string, std::string> metadata;   // "__metadata__"
  const StoredTensor* find(const std::string& name) const;
  void add(const std::string& name, const Tensor& t);  // copies to the host
};

// Thrown for any unreadable, truncated or inconsistent file; what() starts with the path.
struct CheckpointError : Error {
  using Error::Error;
};

void write_safetensors(const std::string& path, const SafeTensors& st);  // atomic (temp + fsync + rename)
SafeTensors read_safetensors(const std::string& path);                   // throws CheckpointError

// A tensor of `dtype` on `device` holding a stored float tensor (F32 / F64 converted as needed).
Tensor to_tensor(const StoredTensor& s, DType dtype, Device device);

// Module state <-> safetensors entries, every name prefixed with `prefix` ("" or "backbone.").
void add_module_state(SafeTensors& st, const Module& m, const std::string& prefix = "");

struct LoadReport {
  std::vector<std::string> missing;     // in the module, not in the file
  std::vector<std::string> unexpected;  // in the file under the prefix, not in the module
  std::vector<std::string> mismatched;  // "name: file [..] vs module [..]"
  bool ok() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
  std::string str() const;              // one line per problem
};
// Loads what matches; with `strict` throws CheckpointError listing every problem when !report.ok().
// File names starting with one of `ignore` (e.g. "optimizer.") are not reported as unexpected.
LoadReport load_module_state(Module& m, const SafeTensors& st, const std::string& prefix = "", bool strict = true,
                             const std::vector<std::string>& ignore = {});

}  // namespace hdssl::models
