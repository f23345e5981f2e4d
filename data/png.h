// PNG snapshots of one axial slice: the image in a grey window, optionally beside a label overlay.
#pragma once
#include <string>
#include <vector>

#include "data/volume.h"

namespace hdssl::data {

// `ras` must be in RAS voxel order (use to_ras). Shown radiologically: patient right on the image's left,
// anterior at the top. Pixels are square in mm only if x and y spacing match. With `labels` (same grid),
// a second panel shows the image with each label in its own colour.
void write_axial_png(const std::string& path, const Volume& ras, int64_t z, double lo, double hi,
                     const Volume* labels = nullptr);

// An 8-bit RGB image, `rgb` row by row from the top, 3 bytes per pixel (width * height * 3 bytes).
void write_rgb_png(const std::string& path, int64_t width, int64_t height, const std::vector<unsigned char>& rgb);

}  // namespace hdssl::data
