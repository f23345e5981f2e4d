// Dice per class against hand-computed cases, including the rule for absent classes.
#include <gtest/gtest.h>

#include "eval/dice.h"

using hdssl::data::Volume;
using hdssl::eval::class_overlaps;
using hdssl::eval::dice_per_class;

static Volume labels(std::vector<float> v) {
  Volume out({int64_t(v.size()), 1, 1});
  out.data = v;
  return out;
}

TEST(Dice, HandComputedPartialOverlap) {
  // class 1: reference voxels {0,1,2,3}, predicted {1,2,3,4}: |P|=4, |R|=4, both=3 -> 6/8
  // class 2: reference {5,6}, predicted {6}: 2*1/(1+2) = 2/3
  Volume ref = labels({1, 1, 1, 1, 0, 2, 2, 0});
  Volume pred = labels({0, 1, 1, 1, 1, 0, 2, 0});
  std::vector<double> d = dice_per_class(pred, ref, 2);
  ASSERT_EQ(d.size(), 2u);
  EXPECT_DOUBLE_EQ(d[0], 0.75);
  EXPECT_DOUBLE_EQ(d[1], 2.0 / 3.0);
  auto o = class_overlaps(pred, ref, 2);
  EXPECT_EQ(o[0].pred, 4);
  EXPECT_EQ(o[0].ref, 4);
  EXPECT_EQ(o[0].both, 3);
  EXPECT_EQ(o[1].both, 1);
}

TEST(Dice, AbsentClassesFollowTheStatedRule) {
  // class 1 perfect, class 2 absent from both (1.0), class 3 only predicted (0.0), class 4 only in the
  // reference (0.0).
  Volume ref = labels({1, 1, 0, 4, 4, 0});
  Volume pred = labels({1, 1, 3, 0, 0, 0});
  std::vector<double> d = dice_per_class(pred, ref, 4);
  ASSERT_EQ(d.size(), 4u);
  EXPECT_DOUBLE_EQ(d[0], 1.0);
  EXPECT_DOUBLE_EQ(d[1], 1.0);
  EXPECT_DOUBLE_EQ(d[2], 0.0);
  EXPECT_DOUBLE_EQ(d[3], 0.0);
}

TEST(Dice, DisjointIsZeroAndIdenticalIsOne) {
  Volume a = labels({1, 1, 2, 2, 0});
  Volume b = labels({2, 2, 1, 1, 0});
  for (double v : dice_per_class(a, b, 2)) EXPECT_DOUBLE_EQ(v, 0.0);
  for (double v : dice_per_class(a, a, 2)) EXPECT_DOUBLE_EQ(v, 1.0);
}

TEST(Dice, ThreeDimensionalVolume) {
  // 2x2x2 reference of class 1 in the x = 0 half; prediction covers the y = 0 half: overlap 2 voxels.
  Volume ref({2, 2, 2}), pred({2, 2, 2});
  for (int y = 0; y < 2; ++y)
    for (int z = 0; z < 2; ++z) ref.at(0, y, z) = 1;
  for (int x = 0; x < 2; ++x)
    for (int z = 0; z < 2; ++z) pred.at(x, 0, z) = 1;
  EXPECT_DOUBLE_EQ(dice_per_class(pred, ref, 1)[0], 2.0 * 2 / (4 + 4));
}

TEST(Dice, RejectsLabelsOutsideTheClassRangeAndMismatchedDims) {
  EXPECT_THROW(dice_per_class(labels({0, 3}), labels({0, 1}), 2), hdssl::data::DataError);
  EXPECT_THROW(dice_per_class(labels({0, 0.5f}), labels({0, 1}), 2), hdssl::data::DataError);
  EXPECT_THROW(dice_per_class(labels({0, 1, 1}), labels({0, 1}), 2), hdssl::data::DataError);
}
