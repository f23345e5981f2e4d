// Reads a fixture pair written by the scripts in tests/reference/: NAME.json (an "arrays" index of
// {shape, offset} into the data, and optional "scalars") and NAME.bin (little-endian float64 values).
#pragma once
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace hdssl::testing {

class FixtureFile {
 public:
  explicit FixtureFile(const std::string& name) {
    const std::string dir = std::string(HDSSL_SOURCE_DIR) + "/tests/reference/fixtures/";
    std::ifstream js(dir + name + ".json");
    HDSSL_CHECK(js.good()) << "missing " << dir << name << ".json";
    const nlohmann::json all = nlohmann::json::parse(js);
    index_ = all["arrays"];
    if (all.contains("scalars")) scalars_ = all["scalars"];
    std::ifstream bin(dir + name + ".bin", std::ios::binary | std::ios::ate);
    HDSSL_CHECK(bin.good()) << "missing " << dir << name << ".bin";
    data_.resize(size_t(bin.tellg()) / sizeof(double));
    bin.seekg(0);
    bin.read(reinterpret_cast<char*>(data_.data()), std::streamsize(data_.size() * sizeof(double)));
  }
  // The named float64 array as a CPU tensor of its recorded shape.
  Tensor get(const std::string& name) const {
    HDSSL_CHECK(index_.contains(name)) << "fixture array " << name << " not found";
    const Shape shape = index_[name]["shape"].get<Shape>();
    const size_t off = index_[name]["offset"].get<size_t>(), n = size_t(numel(shape));
    HDSSL_CHECK(off + n <= data_.size()) << "fixture array " << name << " runs past the data";
    return Tensor::from_vector(std::vector<double>(data_.begin() + long(off), data_.begin() + long(off + n)), shape);
  }
  double scalar(const std::string& name) const {
    HDSSL_CHECK(scalars_.contains(name)) << "fixture scalar " << name << " not found";
    return scalars_[name].get<double>();
  }

 private:
  nlohmann::json index_, scalars_;
  std::vector<double> data_;
};

}  // namespace hdssl::testing
