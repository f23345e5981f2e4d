// Reports: summary.json round trip, the paper's columns, and a table checked against hand arithmetic.
#include <gtest/gtest.h>

#include <cmath>

#include "eval/report.h"

using namespace hdssl::eval;

static const std::vector<std::string> kBtcv = {
    "spleen", "right kidney", "left kidney", "gallbladder", "esophagus", "liver", "stomach", "aorta",
    "inferior vena cava", "portal vein and splenic vein", "pancreas", "right adrenal gland", "left adrenal gland"};

TEST(Report, PaperColumnsOfBtcvLabels) {
  auto cols = paper_columns(kBtcv);
  std::vector<std::string> names;
  for (const auto& c : cols) names.push_back(c.name);
  EXPECT_EQ(names, (std::vector<std::string>{"Sp", "Kid", "Gb", "Es", "Li", "St", "Aor", "IVC", "PVC", "Pa", "AG"}));
  EXPECT_EQ(cols[1].classes, (std::vector<int>{1, 2}));
  EXPECT_EQ(cols[10].classes, (std::vector<int>{11, 12}));
}

TEST(Report, AmosNamesAndUnmatchedClasses) {
  auto cols = paper_columns({"spleen", "kidney_right", "postcava", "duodenum"});
  ASSERT_EQ(cols.size(), 4u);
  EXPECT_EQ(cols[0].name, "Sp");
  EXPECT_EQ(cols[1].name, "Kid");
  EXPECT_EQ(cols[2].name, "IVC");
  EXPECT_EQ(cols[3].name, "duodenum");
}

static TableRow hand_row() {
  const std::vector<std::string> labels = {"spleen", "right kidney", "left kidney"};
  FoldSummary f0{0, labels, {{"c1", {1.0, 0.5, 0.7}}, {"c2", {0.8, 0.5, 0.3}}}};
  FoldSummary f1{1, labels, {{"c3", {0.6, 0.2, 0.4}}}};
  return TableRow{"m", {f0, f1}};
}

TEST(Report, HandComputedMeansAndStd) {
  TableRow r = hand_row();
  // fold 0: class means {0.9, 0.5, 0.5}, overall 1.9/3; fold 1: {0.6, 0.2, 0.4}, overall 0.4
  EXPECT_NEAR(r.folds[0].overall(), 1.9 / 3, 1e-12);
  EXPECT_NEAR(r.folds[1].overall(), 0.4, 1e-12);
  auto cols = paper_columns(r.folds[0].labels);
  TableCell all;
  auto cells = row_cells(r, cols, &all);
  ASSERT_EQ(cells.size(), 2u);
  EXPECT_NEAR(cells[0].mean, 0.75, 1e-12);   // spleen (0.9 + 0.6) / 2
  EXPECT_NEAR(cells[1].mean, 0.4, 1e-12);    // kidneys (0.5 + 0.3) / 2
  EXPECT_NEAR(all.mean, (1.9 / 3 + 0.4) / 2, 1e-12);
  EXPECT_NEAR(all.std, std::fabs(1.9 / 3 - 0.4) / 2, 1e-12);  // population std of two values

  const std::string md = table_markdown({r}, false);
  EXPECT_NE(md.find("| method | Sp | Kid | Overall |"), std::string::npos) << md;
  EXPECT_NE(md.find("| m | 75.0 | 40.0 | 51.7 ± 11.7 |"), std::string::npos) << md;
  const std::string csv = table_csv({r}, true);
  EXPECT_NE(csv.find("method,fold,Sp,Kid,overall_mean,overall_std,folds\n"), std::string::npos) << csv;
  EXPECT_NE(csv.find("m,0,90.00,50.00,63.33,,1\n"), std::string::npos) << csv;
  EXPECT_NE(csv.find("m,mean,75.00,40.00,51.67,11.67,2\n"), std::string::npos) << csv;
}

TEST(Report, SummaryJsonRoundTrip) {
  TableRow r = hand_row();
  const std::string path = ::testing::TempDir() + "summary.json";
  write_summary(path, r.folds[0]);
  FoldSummary back = read_summary(path);
  EXPECT_EQ(back.fold, 0);
  EXPECT_EQ(back.labels, r.folds[0].labels);
  ASSERT_EQ(back.cases.size(), 2u);
  EXPECT_EQ(back.cases[1].id, "c2");
  EXPECT_EQ(back.cases[1].dice, r.folds[0].cases[1].dice);
  auto j = summary_to_json(r.folds[0]);
  EXPECT_NEAR(j["mean"]["spleen"].get<double>(), 0.9, 1e-12);
  EXPECT_NEAR(j["overall_mean"].get<double>(), 1.9 / 3, 1e-12);
  EXPECT_EQ(j["labels"]["2"], "right kidney");
}

TEST(Report, RefusesMixedLabelSets) {
  TableRow a = hand_row(), b = hand_row();
  b.folds[0].labels[0] = "liver";
  EXPECT_THROW(table_markdown({a, b}, false), std::exception);
}
