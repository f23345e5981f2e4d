// Resampling a volume to a new voxel spacing: trilinear for images, nearest for label maps.
#pragma once
#include "data/volume.h"

namespace hdssl::data {

enum class Interp { Linear, Nearest };

// Voxel centres are aligned: output voxel i samples input coordinate (i + 0.5) * scale - 0.5 along each
// axis (scale = new spacing / old spacing), clamped to the volume. The affine is updated to match.
Volume resample_scale(const Volume& v, Dims3 out_dims, std::array<double, 3> scale, Interp interp);
// Resamples to `spacing` mm (dims = round(old_dims * old_spacing / spacing), at least 1). No-op copy when
// the spacing already matches within 1e-6.
Volume resample_to_spacing(const Volume& v, std::array<double, 3> spacing, Interp interp);
Dims3 resampled_dims(Dims3 dims, std::array<double, 3> old_spacing, std::array<double, 3> spacing);

}  // namespace hdssl::data
