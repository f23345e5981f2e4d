// Folds: a seeded Fisher-Yates shuffle of the sorted ids, dealt round-robin into k parts.
#include "eval/folds.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "data/volume.h"
#include "engine/random.h"

namespace hdssl::eval {

static void shuffle(std::vector<std::string>& v, uint64_t seed, uint64_t stream) {
  Rng rng(seed, stream);
  for (int64_t i = int64_t(v.size()) - 1; i > 0; --i) std::swap(v[size_t(i)], v[size_t(rng.randint(0, i + 1))]);
}

std::vector<Fold> make_folds(std::vector<std::string> cases, int k, uint64_t seed) {
  std::sort(cases.begin(), cases.end());
  if (std::adjacent_find(cases.begin(), cases.end()) != cases.end())
    throw data::DataError("folds: duplicate case id");
  if (k < 2 || size_t(k) > cases.size())
    throw data::DataError("folds: need 2 <= k <= number of cases (k = " + std::to_string(k) + ", " +
                          std::to_string(cases.size()) + " cases)");
  shuffle(cases, seed, 0xf01d);
  std::vector<Fold> folds(static_cast<size_t>(k));
  for (size_t i = 0; i < cases.size(); ++i)
    for (size_t f = 0; f < folds.size(); ++f) (f == i % size_t(k) ? folds[f].val : folds[f].train).push_back(cases[i]);
  for (Fold& f : folds) {
    std::sort(f.train.begin(), f.train.end());
    std::sort(f.val.begin(), f.val.end());
  }
  return folds;
}

std::vector<Fold> read_splits(const std::string& path, const std::vector<std::string>& known) {
  std::ifstream in(path);
  if (!in) throw data::DataError(path + ": cannot open");
  nlohmann::json j;
  try {
    in >> j;
  } catch (const std::exception& e) {
    throw data::DataError(path + ": not valid JSON: " + e.what());
  }
  if (!j.is_array() || j.empty()) throw data::DataError(path + ": expected a non-empty list of folds");
  std::set<std::string> known_set(known.begin(), known.end());
  std::vector<Fold> folds;
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string where = path + ": fold " + std::to_string(i);
    if (!j[i].is_object() || !j[i].contains("train") || !j[i].contains("val"))
      throw data::DataError(where + ": needs \"train\" and \"val\" lists");
    Fold f;
    try {
      f.train = j[i]["train"].get<std::vector<std::string>>();
      f.val = j[i]["val"].get<std::vector<std::string>>();
    } catch (const std::exception&) {
      throw data::DataError(where + ": \"train\" and \"val\" must be lists of case ids");
    }
    std::set<std::string> tr(f.train.begin(), f.train.end());
    for (const std::string& c : f.val)
      if (tr.count(c)) throw data::DataError(where + ": case '" + c + "' is in both train and val");
    if (!known_set.empty())
      for (const auto* list : {&f.train, &f.val})
        for (const std::string& c : *list)
          if (!known_set.count(c)) throw data::DataError(where + ": unknown case '" + c + "'");
    if (f.val.empty()) throw data::DataError(where + ": empty \"val\" list");
    folds.push_back(std::move(f));
  }
  return folds;
}

void write_splits(const std::string& path, const std::vector<Fold>& folds) {
  nlohmann::json j = nlohmann::json::array();
  for (const Fold& f : folds) j.push_back({{"train", f.train}, {"val", f.val}});
  std::ofstream out(path);
  if (!out) throw data::DataError(path + ": cannot write");
  out << j.dump(2) << "\n";
}

std::vector<std::string> few_label_subset(const std::vector<std::string>& train, int n, uint64_t seed) {
  if (n <= 0 || size_t(n) >= train.size()) return train;
  std::vector<std::string> v = train;
  std::sort(v.begin(), v.end());
  shuffle(v, seed, 0x4ca5e5);
  v.resize(size_t(n));
  std::sort(v.begin(), v.end());
  return v;
}

}  // namespace hdssl::eval
