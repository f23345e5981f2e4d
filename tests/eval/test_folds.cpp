// Folds: every case validated exactly once, deterministic per seed, splits_final.json round trip and
// refusals, few-label subsets.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <set>

#include "data/volume.h"
#include "eval/folds.h"

using namespace hdssl::eval;

static std::vector<std::string> ids(int n) {
  std::vector<std::string> v;
  for (int i = 0; i < n; ++i) v.push_back("case_" + std::to_string(100 + i));
  return v;
}

TEST(Folds, PartitionTheCases) {
  std::vector<std::string> cases = ids(11);
  std::vector<Fold> folds = make_folds(cases, 3, 7);
  ASSERT_EQ(folds.size(), 3u);
  std::multiset<std::string> seen;
  for (const Fold& f : folds) {
    EXPECT_TRUE(f.val.size() == 3 || f.val.size() == 4);
    EXPECT_EQ(f.train.size() + f.val.size(), cases.size());
    std::set<std::string> all(f.train.begin(), f.train.end());
    for (const auto& c : f.val) EXPECT_EQ(all.count(c), 0u) << c;
    all.insert(f.val.begin(), f.val.end());
    EXPECT_EQ(all, std::set<std::string>(cases.begin(), cases.end()));
    seen.insert(f.val.begin(), f.val.end());
  }
  EXPECT_EQ(seen, std::multiset<std::string>(cases.begin(), cases.end()));
}

TEST(Folds, DeterministicPerSeedAndIndependentOfInputOrder) {
  std::vector<std::string> cases = ids(12), reversed = cases;
  std::reverse(reversed.begin(), reversed.end());
  auto a = make_folds(cases, 4, 3), b = make_folds(reversed, 4, 3), c = make_folds(cases, 4, 4);
  bool differs = false;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].val, b[i].val);
    differs |= a[i].val != c[i].val;
  }
  EXPECT_TRUE(differs) << "seeds 3 and 4 gave the same folds";
}

TEST(Folds, RefusesBadK) {
  EXPECT_THROW(make_folds(ids(3), 4, 0), hdssl::data::DataError);
  EXPECT_THROW(make_folds(ids(3), 1, 0), hdssl::data::DataError);
}

TEST(Splits, RoundTripAndRefusals) {
  const std::string path = ::testing::TempDir() + "splits_final.json";
  auto folds = make_folds(ids(6), 3, 1);
  write_splits(path, folds);
  auto back = read_splits(path, ids(6));
  ASSERT_EQ(back.size(), folds.size());
  for (size_t i = 0; i < folds.size(); ++i) {
    EXPECT_EQ(back[i].train, folds[i].train);
    EXPECT_EQ(back[i].val, folds[i].val);
  }
  EXPECT_THROW(read_splits(path, {"case_100"}), hdssl::data::DataError);  // unknown ids

  std::ofstream(path) << R"([{"train": ["a", "b"], "val": ["b"]}])";
  EXPECT_THROW(read_splits(path), hdssl::data::DataError);  // b in both lists
  std::ofstream(path) << R"([{"train": ["a"]}])";
  EXPECT_THROW(read_splits(path), hdssl::data::DataError);  // no val
  std::ofstream(path) << R"({"train": ["a"], "val": ["b"]})";
  EXPECT_THROW(read_splits(path), hdssl::data::DataError);  // not a list
  std::remove(path.c_str());
}

TEST(Splits, FewLabelSubset) {
  std::vector<std::string> train = ids(10);
  auto s = few_label_subset(train, 4, 9);
  ASSERT_EQ(s.size(), 4u);
  EXPECT_TRUE(std::is_sorted(s.begin(), s.end()));
  for (const auto& c : s) EXPECT_NE(std::find(train.begin(), train.end(), c), train.end());
  EXPECT_EQ(s, few_label_subset(train, 4, 9));
  EXPECT_EQ(few_label_subset(train, 0, 9), train);
  EXPECT_EQ(few_label_subset(train, 20, 9), train);
}
