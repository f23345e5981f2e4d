// Model selection (issue 11 (c)): the validation list inside a fold's training cases, the best-validation
// checkpoint (kept, resumed, restored), and summary.json recording the chosen step.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "eval/folds.h"
#include "eval/report.h"
#include "eval/selection.h"
#include "models/checkpoint.h"

using namespace hdssl;
using namespace hdssl::eval;

namespace {

std::vector<std::string> six() { return {"c0", "c1", "c2", "c3", "c4", "c5"}; }

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

models::SegmenterConfig tiny() {
  models::SegmenterConfig c;
  c.fpn.base = 4;
  c.fpn.scales = 2;
  c.fpn.blocks = 1;
  c.classes = 2;
  c.head = models::HeadKind::Linear;
  return c;
}

PatchBatch batch(uint64_t seed) {
  Rng rng(seed);
  std::vector<float> img(2 * 8 * 8 * 8), tgt;
  for (float& x : img) x = rng.uniformf();
  for (int i = 0; i < 2; ++i)
    for (int k = 0; k < 2; ++k)
      for (int v = 0; v < 512; ++v) tgt.push_back(img[size_t(i * 512 + v)] > 0.3f * float(k + 1) ? 1.f : 0.f);
  return {Tensor::from_vector(img, {2, 1, 8, 8, 8}), Tensor::from_vector(tgt, {2, 2, 8, 8, 8})};
}

std::vector<float> weights(const models::Segmenter& m) {
  std::vector<float> out;
  for (auto& [n, p] : m.named_parameters()) {
    auto v = p.value().to_vector<float>();
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

}  // namespace

TEST(Selection, ValidationCasesLieInsideTheFoldsTrainingCases) {
  SelectionConfig sel{0.2, 50};
  // All training cases: 20 % of 6 -> 1 validates, 5 train; together they are the fold's training cases.
  TrainValSplit all = selection_split(six(), 0, sel, 3);
  EXPECT_EQ(all.val.size(), 1u);
  EXPECT_EQ(all.train.size(), 5u);
  for (const auto& c : six()) EXPECT_TRUE(contains(all.train, c) != contains(all.val, c)) << c;
  // Few-label runs: the same 4 training cases as without selection, validation on the cases left over.
  TrainValSplit four = selection_split(six(), 4, sel, 3);
  EXPECT_EQ(four.train, few_label_subset(six(), 4, 3));
  ASSERT_EQ(four.val.size(), 1u);
  EXPECT_FALSE(contains(four.train, four.val[0]));
  EXPECT_TRUE(contains(six(), four.val[0]));
  // Half of 6 is 3, but only 2 cases are left over.
  EXPECT_EQ(selection_split(six(), 4, {0.5, 50}, 3).val.size(), 2u);
  // Seeded and stable.
  EXPECT_EQ(selection_split(six(), 0, sel, 3).val, all.val);
  // Off: today's behaviour.
  TrainValSplit off = selection_split(six(), 4, {0.2, 0}, 3);
  EXPECT_TRUE(off.val.empty());
  EXPECT_EQ(off.train, few_label_subset(six(), 4, 3));
  EXPECT_THROW(selection_split({"only"}, 0, sel, 0), Error);
}

TEST(Selection, TheTestedCheckpointIsTheBestValidationStepAndSummaryJsonSaysSo) {
  const std::string path = ::testing::TempDir() + "best_ckpt.safetensors";
  std::remove(path.c_str());
  Rng rng(1);
  models::Segmenter m(tiny(), rng);
  TrainConfig tc;
  tc.mode = Mode::Linear;
  tc.lr = 1e-2;
  Trainer t(m, tc, Device::cpu());
  BestCheckpoint best(path);
  const std::vector<double> val = {0.30, 0.55, 0.41, 0.55};  // a made-up validation curve: step 20 is best
  std::vector<float> at_best;
  for (int s = 0; s < 4; ++s) {
    for (int k = 0; k < 10; ++k) t.step(batch(uint64_t(s * 10 + k)), s * 10 + k);
    const bool better = best.offer((s + 1) * 10, val[size_t(s)], t, {{"note", "x"}});
    EXPECT_EQ(better, s <= 1) << "step " << (s + 1) * 10;
    if (s == 1) at_best = weights(m);
  }
  EXPECT_EQ(best.best_step(), 20);
  EXPECT_DOUBLE_EQ(best.best_dice(), 0.55);
  EXPECT_EQ(best.history().size(), 4u);
  ASSERT_NE(weights(m), at_best) << "training went on after the best step";
  // A resumed run finds the best step in the file.
  BestCheckpoint again(path);
  EXPECT_EQ(again.best_step(), 20);
  EXPECT_DOUBLE_EQ(again.best_dice(), 0.55);
  EXPECT_EQ(again.history().size(), 2u);
  // Restoring puts the best weights back.
  EXPECT_EQ(best.restore(t), 20);
  EXPECT_EQ(weights(m), at_best);
  // summary.json records the chosen step, and it is the argmax of the recorded curve.
  FoldSummary s;
  s.fold = 0;
  s.labels = {"a", "b"};
  s.cases = {{"c9", {0.5, 0.7}}};
  s.selection.selected_step = best.best_step();
  s.selection.last_step = 40;
  s.selection.val_dice = best.best_dice();
  s.selection.val_cases = {"c5"};
  s.selection.train_cases = {"c0", "c1"};
  s.selection.history = best.history();
  const std::string sp = ::testing::TempDir() + "summary_sel.json";
  write_summary(sp, s);
  nlohmann::json j;
  std::ifstream(sp) >> j;
  EXPECT_EQ(j.at("selection").at("selected_step"), 20);
  int64_t argmax = -1;
  double mx = -1;
  for (const auto& e : j.at("selection").at("history"))
    if (e[1].get<double>() > mx) { mx = e[1]; argmax = e[0]; }
  EXPECT_EQ(argmax, j.at("selection").at("selected_step").get<int64_t>());
  FoldSummary r = read_summary(sp);
  EXPECT_EQ(r.selection.selected_step, 20);
  EXPECT_EQ(r.selection.history, s.selection.history);
  EXPECT_EQ(r.selection.val_cases, s.selection.val_cases);
  // Without selection there is no "selection" key (the last step was tested).
  FoldSummary plain = s;
  plain.selection = {};
  EXPECT_FALSE(summary_to_json(plain).contains("selection"));
  std::remove(path.c_str());
  std::remove(sp.c_str());
}
