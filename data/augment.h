// The two augmentation sets of docs/method.md section 4, each part switchable on its own. All functions work
// in place on one patch (z fastest, dims d) and draw only from the Rng they are given.
#pragma once
#include <array>
#include <vector>

#include "data/volume.h"
#include "engine/random.h"

namespace hdssl::data {

// "ours" (Models Genesis): local pixel shuffling, non-linear Bezier intensity, in-painting, in that order.
struct LocalAugConfig {
  bool shuffle = true;
  double shuffle_p = 0.8;
  int shuffle_blocks = 5000;
  int shuffle_block_div = 20;   // block side = dim / 20, but at least shuffle_block_min in that axis
  // The smallest block side per axis (x, y, z). The paper's dim/20 is 1x1x1 (a no-op) at 32x32x16, so the
  // default keeps 2x2 blocks in the axial plane there; at the paper's 128x128x32 (6x6x1) it changes nothing.
  Dims3 shuffle_block_min{2, 2, 1};
  bool bezier = true;
  double bezier_p = 0.9;
  bool inpaint = true;
  int inpaint_max_boxes = 30;
  double inpaint_continue_p = 0.95;
};

// vox2vec. Program order (the default, vox2vec's published program): blur or sharpen in the axial plane
// (p 0.5), then Gaussian noise of up to noise_sigma_max_hu HU (p 0.5), then the intensity window, clipped
// last: a random window (p 0.8) or else the data window, so the patch ends in [0, 1] (CT). Legacy order
// (hdssl before issue 11): random window with clipping first, then blur/sharpen, then noise of up to
// noise_sigma_max in [0, 1] units, no final clip. MRI (ct = false): no window and no clip in either order;
// the noise is then noise_sigma_max in [0, 1] units.
struct Vox2vecAugConfig {
  bool program_order = true;
  bool window = true;               // only applied when `ct` is true
  double window_p = 0.8;
  bool blur_sharpen = true;
  double blur_sharpen_p = 0.5;
  bool noise = true;
  double noise_p = 0.5;
  double noise_sigma_max = 30.0 / 2350.0;  // legacy order and MRI: [0, 1] units (30 HU in the window [-1350, 1000])
  double noise_sigma_max_hu = 30.0;        // program order, CT: HU, scaled by the data window's width
  bool ct = true;
  double data_window_lo = -1350, data_window_hi = 1000;  // the HU window the data was scaled with
};

struct Box3 { Dims3 begin{0, 0, 0}, size{0, 0, 0}; };

// Permutes the voxels inside one block (a random permutation of its voxels).
void shuffle_block(float* p, Dims3 d, const Box3& block, Rng& rng);
// `blocks` blocks of side max(1, d/div) at uniform positions, each shuffled; returns the blocks.
std::vector<Box3> local_pixel_shuffle(float* p, Dims3 d, int blocks, int div, Rng& rng);
// Same with block side max(min_side[a], d[a]/div) in axis a (capped at d[a]).
std::vector<Box3> local_pixel_shuffle(float* p, Dims3 d, int blocks, int div, Dims3 min_side, Rng& rng);

// Monotone map of [0, 1] onto [0, 1]: a cubic Bezier through (0,0), P1, P2, (1,1) sampled at 1000 t,
// with the x and y samples sorted separately, evaluated by linear interpolation (np.interp).
class BezierMap {
 public:
  BezierMap(std::array<double, 2> p1, std::array<double, 2> p2);
  static BezierMap random(Rng& rng);
  float operator()(float v) const;  // inputs outside [0, 1] are clamped
  void apply(float* p, int64_t n) const;
 private:
  std::vector<float> lut_;  // values at v = i / (lut_.size() - 1)
};

// In-painting: while fewer than max_boxes and a coin with p = continue_p says go on, a box with sides in
// [dim/10, dim/5) kept 3 voxels inside the border is filled with uniform noise in [0, 1). Returns the boxes.
std::vector<Box3> inpaint(float* p, Dims3 d, int max_boxes, double continue_p, Rng& rng);

void augment_local(float* p, Dims3 d, const LocalAugConfig& cfg, Rng& rng);

// Gaussian blur in the axial (x, y) plane, zero-phase, edges clamped.
void blur_axial(float* p, Dims3 d, double sigma);
void augment_vox2vec(float* p, Dims3 d, const Vox2vecAugConfig& cfg, Rng& rng);

}  // namespace hdssl::data
