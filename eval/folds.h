// Cross-validation folds: seeded k-fold splits of the case ids, nnU-Net's splits_final.json, and the
// few-label subsets of a fold's training cases.
//
// splits_final.json is nnU-Net v2's format: a JSON list with one object per fold,
// [{"train": ["case_a", ...], "val": ["case_b", ...]}, ...]. `make_folds` sorts the ids, shuffles them
// with the seed, and deals them into k folds of sizes differing by at most one; fold i validates on
// part i and trains on the rest.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace hdssl::eval {

struct Fold {
  std::vector<std::string> train, val;
};

std::vector<Fold> make_folds(std::vector<std::string> cases, int k, uint64_t seed);

// Reads / writes splits_final.json. Reading checks that every fold has both lists, that no id appears
// in both lists of a fold and, when `known` is non-empty, that every id is one of the known cases.
std::vector<Fold> read_splits(const std::string& path, const std::vector<std::string>& known = {});
void write_splits(const std::string& path, const std::vector<Fold>& folds);

// The first n of a seeded shuffle of `train` (the few-label runs: 4, 8 or 42 cases). n <= 0 or
// n >= train.size() returns `train` unchanged. The result is sorted, so logs read easily.
std::vector<std::string> few_label_subset(const std::vector<std::string>& train, int n, uint64_t seed);

}  // namespace hdssl::eval
