// The preprocessing a checkpoint expects vs. a run's: the key round-trips, each difference is named, and
// settings that do not change a voxel's value (crop thresholds, minimum size) are not differences.
#include <gtest/gtest.h>

#include "data/preprocess_compat.h"

using namespace hdssl::data;

TEST(PreprocessCompat, KeyRoundTripsForBothPresets) {
  for (PreprocessConfig c : {PreprocessConfig::ct(), PreprocessConfig::mri()}) {
    c.spacing = {0.75, 1.25, 3};
    c.ct_clip_lo = -175, c.ct_clip_hi = 250;
    c.min_size = {64, 48, 16};
    PreprocessConfig p = parse_preprocess_key(c.key(), "w");
    EXPECT_EQ(p.key(), c.key());
    EXPECT_EQ(preprocess_differences(c, p), "");
  }
}

TEST(PreprocessCompat, NamesEveryDifference) {
  PreprocessConfig e = PreprocessConfig::ct(), r = PreprocessConfig::ct();
  e.ct_clip_lo = -175, e.ct_clip_hi = 250;
  EXPECT_EQ(preprocess_differences(e, r),
            "CT window: the weights expect [-175, 250] HU, this run uses [-1350, 1000] HU");
  r.spacing = {1.5, 1.5, 1.5};
  EXPECT_EQ(preprocess_differences(e, r),
            "spacing: the weights expect 1 x 1 x 2 mm, this run uses 1.5 x 1.5 x 1.5 mm; "
            "CT window: the weights expect [-175, 250] HU, this run uses [-1350, 1000] HU");
  r = PreprocessConfig::mri();
  const std::string d = preprocess_differences(e, r);
  EXPECT_NE(d.find("modality: the weights expect ct, this run uses mri"), std::string::npos) << d;
  EXPECT_EQ(d.find("window"), std::string::npos) << d;  // windows of different modalities are not compared
  PreprocessConfig m = PreprocessConfig::mri();
  m.mri_pct_lo = 1, m.mri_pct_hi = 99.99;
  EXPECT_EQ(preprocess_differences(m, r),
            "MRI clip percentiles: the weights expect 1 / 99.99, this run uses 0.01 / 99.9");
  const std::string msg = preprocess_mismatch_message("w.safetensors", m, r, "--allow-preprocess-mismatch");
  EXPECT_EQ(msg.rfind("w.safetensors: MRI clip percentiles", 0), 0u) << msg;
  EXPECT_NE(msg.find("--allow-preprocess-mismatch"), std::string::npos) << msg;
  EXPECT_EQ(preprocess_mismatch_message("w", m, m, "--x"), "");
}

TEST(PreprocessCompat, CropAndSizeAreNotDifferences) {
  PreprocessConfig e = PreprocessConfig::ct(), r = PreprocessConfig::ct();
  r.min_size = {16, 16, 8};
  r.ct_crop_hu = -300;
  r.body_threshold = 0.5;
  r.spacing = {1.0000000001, 1, 2};
  EXPECT_EQ(preprocess_differences(e, r), "");
}

TEST(PreprocessCompat, MetadataWithoutOrWithBadKey) {
  EXPECT_FALSE(expected_preprocessing({}, "w").has_value());
  EXPECT_FALSE(expected_preprocessing({{"preprocessing", ""}}, "w").has_value());
  auto c = expected_preprocessing({{"preprocessing", PreprocessConfig::mri().key()}}, "w");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->modality, Modality::MRI);
  for (const char* bad : {"v2 mod=ct", "v1 mod=pet sp=1,1,2 ct=0,1,0 mri=0,1,0 min=1,1,1 body=0.3",
                          "v1 mod=ct sp=1,1 ct=0,1,0 mri=0,1,0 min=1,1,1 body=0.3",
                          "v1 mod=ct sp=1,x,2 ct=0,1,0 mri=0,1,0 min=1,1,1 body=0.3", "v1 mod=ct sp=1,1,2"}) {
    try {
      expected_preprocessing({{"preprocessing", bad}}, "w.safetensors");
      ADD_FAILURE() << "accepted " << bad;
    } catch (const DataError& e) {
      EXPECT_EQ(std::string(e.what()).rfind("w.safetensors: ", 0), 0u) << e.what();
    }
  }
}
