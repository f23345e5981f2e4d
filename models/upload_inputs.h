// A pretraining batch as the list of tensors engine/batch_uploader.h moves to the device, and back:
// view_a, view_b, target_a, target_b, coords_a, coords_b, in that order.
#pragma once
#include <vector>

#include "engine/check.h"
#include "models/pretrainer.h"

namespace hdssl::models {

inline std::vector<Tensor> input_tensors(const PretrainInputs& in) {
  return {in.view_a, in.view_b, in.target_a, in.target_b, in.coords_a, in.coords_b};
}

inline PretrainInputs inputs_from_tensors(const std::vector<Tensor>& t) {
  HDSSL_CHECK(t.size() == 6) << "a pretraining batch has 6 tensors, got " << t.size();
  return {t[0], t[1], t[2], t[3], t[4], t[5]};
}

}  // namespace hdssl::models
