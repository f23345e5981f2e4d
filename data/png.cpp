// Axial slice to PNG with libpng (8-bit RGB).
#include "data/png.h"

#include <png.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

namespace hdssl::data {

void write_axial_png(const std::string& path, const Volume& ras, int64_t z, double lo, double hi, const Volume* labels) {
  if (z < 0 || z >= ras.dims[2]) throw DataError(path + ": slice " + std::to_string(z) + " is outside the volume");
  static const unsigned char pal[14][3] = {{0, 0, 0},     {230, 25, 75},  {60, 180, 75},  {255, 225, 25}, {0, 130, 200},
                                           {245, 130, 48}, {145, 30, 180}, {70, 240, 240}, {240, 50, 230}, {210, 245, 60},
                                           {250, 190, 212}, {0, 128, 128}, {220, 190, 255}, {170, 110, 40}};
  const int64_t W = ras.dims[0], H = ras.dims[1], panels = labels ? 2 : 1;
  std::vector<unsigned char> rgb(size_t(W * panels * H * 3));
  for (int64_t r = 0; r < H; ++r)
    for (int64_t c = 0; c < W; ++c) {
      int64_t x = W - 1 - c, y = H - 1 - r;  // radiological: right on the left, anterior on top
      double g = std::clamp((ras.at(x, y, z) - lo) / (hi - lo), 0.0, 1.0) * 255.0;
      unsigned char* px = &rgb[size_t((r * W * panels + c) * 3)];
      px[0] = px[1] = px[2] = (unsigned char)(g + 0.5);
      if (labels) {
        unsigned char* q = &rgb[size_t((r * W * panels + W + c) * 3)];
        int l = int(labels->at(x, y, z));
        for (int k = 0; k < 3; ++k)
          q[k] = l > 0 && l < 14 ? (unsigned char)(0.45 * g + 0.55 * pal[l][k]) : (unsigned char)(g + 0.5);
      }
    }
  write_rgb_png(path, W * panels, H, rgb);
}

// Written to a temporary name and renamed, so a failed write (a full disk) leaves the previous PNG intact.
void write_rgb_png(const std::string& path, int64_t width, int64_t height, const std::vector<unsigned char>& rgb) {
  if (int64_t(rgb.size()) != width * height * 3) throw DataError(path + ": RGB buffer size does not match the image");
  const int64_t W = width, H = height;
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw DataError(path + ": cannot open for writing");
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    std::fclose(f);
    std::remove(tmp.c_str());
    throw DataError(path + ": libpng error while writing (disk full?); the previous file is kept");
  }
  png_init_io(png, f);
  png_set_IHDR(png, info, png_uint_32(W), png_uint_32(H), 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int64_t r = 0; r < H; ++r) png_write_row(png, const_cast<unsigned char*>(&rgb[size_t(r * W * 3)]));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  const bool flushed = std::fflush(f) == 0 && !std::ferror(f);
  if (std::fclose(f) != 0 || !flushed) {
    std::remove(tmp.c_str());
    throw DataError(path + ": write failed (disk full?); the previous file is kept");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw DataError(path + ": cannot replace the file");
  }
}

}  // namespace hdssl::data
