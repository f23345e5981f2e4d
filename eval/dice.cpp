// Dice per class: one pass over the voxels counting |P_k|, |R_k| and |P_k & R_k|.
#include "eval/dice.h"

#include <cmath>
#include <string>

namespace hdssl::eval {

double ClassOverlap::dice() const {
  if (pred == 0 && ref == 0) return 1.0;  // absent from both: perfect
  return 2.0 * double(both) / double(pred + ref);
}

static int label_at(const data::Volume& v, size_t i, int num_classes, const char* what) {
  float f = v.data[i];
  int l = int(std::lround(f));
  if (!(l >= 0 && l <= num_classes) || std::fabs(f - float(l)) > 1e-3f)
    throw data::DataError(std::string(what) + " label map: value " + std::to_string(f) + " at voxel " +
                          std::to_string(i) + " is not a label in 0.." + std::to_string(num_classes));
  return l;
}

std::vector<ClassOverlap> class_overlaps(const data::Volume& pred, const data::Volume& ref, int num_classes) {
  if (pred.dims != ref.dims)
    throw data::DataError("Dice: prediction and reference label maps have different dims");
  std::vector<ClassOverlap> o(static_cast<size_t>(num_classes));
  for (size_t i = 0; i < pred.data.size(); ++i) {
    int p = label_at(pred, i, num_classes, "predicted");
    int r = label_at(ref, i, num_classes, "reference");
    if (p > 0) o[size_t(p - 1)].pred++;
    if (r > 0) o[size_t(r - 1)].ref++;
    if (p > 0 && p == r) o[size_t(p - 1)].both++;
  }
  return o;
}

std::vector<double> dice_per_class(const data::Volume& pred, const data::Volume& ref, int num_classes) {
  std::vector<double> d;
  for (const ClassOverlap& o : class_overlaps(pred, ref, num_classes)) d.push_back(o.dice());
  return d;
}

}  // namespace hdssl::eval
