// Does a run preprocess images the way a checkpoint's weights expect? A backbone file records the
// preprocessing its weights were trained with (metadata "preprocessing": PreprocessConfig::key(), written by
// ./pretrain and by scripts/import_weights.py); a run that feeds it differently scaled or sampled images
// gets features the weights never saw. Compared: modality, target spacing, and the intensity window (CT:
// the HU clip; MRI: the clip percentiles). Crop thresholds, the minimum size and the body mask are not:
// they decide where patches come from, not what a voxel's value means.
#pragma once
#include <map>
#include <optional>
#include <string>

#include "data/preprocess.h"

namespace hdssl::data {

// Parses PreprocessConfig::key() back ("v1 mod=ct sp=1,1,2 ct=-1350,1000,-500 mri=0.01,99.9,0.3
// min=128,128,32 body=0.3"); throws DataError naming `what` and the field when the text is malformed.
PreprocessConfig parse_preprocess_key(const std::string& key, const std::string& what);

// The expected preprocessing of a checkpoint's metadata, or nullopt when it records none.
std::optional<PreprocessConfig> expected_preprocessing(const std::map<std::string, std::string>& metadata,
                                                        const std::string& what);

// "" when `run` preprocesses as `expected`; else one clause per difference, e.g.
// "modality: the weights expect ct, this run uses mri; spacing: the weights expect 1 x 1 x 2 mm, this run
// uses 1.5 x 1.5 x 1.5 mm". Numbers are equal when they agree to 1e-6 (relative).
std::string preprocess_differences(const PreprocessConfig& expected, const PreprocessConfig& run);

// The refusal message for a program: "" when compatible, else "<weights>: <differences>; preprocess as
// the weights expect, or pass <override_flag> to use them anyway".
std::string preprocess_mismatch_message(const std::string& weights_path, const PreprocessConfig& expected,
                                        const PreprocessConfig& run, const std::string& override_flag);

}  // namespace hdssl::data
