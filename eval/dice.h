// Dice per class per case, on label maps.
//
// A label map holds one integer label per voxel (0 = background, 1..K = the foreground classes of
// dataset.json), stored as the data room's float Volume. Dice of class k between a prediction P and a
// reference R is 2 |P_k & R_k| / (|P_k| + |R_k|). The rule for classes that are absent:
//   - absent from both the prediction and the reference: Dice = 1.0 (nothing to find, nothing found);
//   - absent from the reference but predicted: 0.0 (every predicted voxel is a false positive);
//   - present in the reference but not predicted: 0.0 (the formula gives it).
// Every case therefore has a Dice for every class, and means over cases and classes are plain means.
#pragma once
#include <cstdint>
#include <vector>

#include "data/volume.h"

namespace hdssl::eval {

struct ClassOverlap {
  int64_t pred = 0, ref = 0, both = 0;  // |P_k|, |R_k|, |P_k & R_k| in voxels
  double dice() const;                  // with the rule above
};

// Overlap counts of classes 1..num_classes (index k-1) between two label maps of the same dims.
// Labels outside 0..num_classes are an error (a wrong dataset.json is better caught than averaged).
std::vector<ClassOverlap> class_overlaps(const data::Volume& pred, const data::Volume& ref, int num_classes);

// Dice of classes 1..num_classes (index k-1).
std::vector<double> dice_per_class(const data::Volume& pred, const data::Volume& ref, int num_classes);

}  // namespace hdssl::eval
