// The two augmentation sets of METHOD.md section 4, each part switchable on its own. All functions work
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
  int shuffle_block_div = 20;   // block side = dim / 20 (at least 1)
  bool bezier = true;
  double bezier_p = 0.9;
  bool inpaint = true;
  int inpaint_max_boxes = 30;
  double inpaint_continue_p = 0.95;
};

// vox2vec: random CT intensity window (p 0.8), then blur or sharpen in the axial plane (p 0.5), then
// Gaussian noise (p 0.5).
struct Vox2vecAugConfig {
  bool window = true;               // only applied when `ct` is true
  double window_p = 0.8;
  bool blur_sharpen = true;
  double blur_sharpen_p = 0.5;
  bool noise = true;
  double noise_p = 0.5;
  double noise_sigma_max = 30.0 / 2350.0;  // 30 HU in the [0, 1] scale of the CT window [-1350, 1000]
  bool ct = true;
  double data_window_lo = -1350, data_window_hi = 1000;  // the HU window the data was scaled with
};

struct Box3 { Dims3 begin{0, 0, 0}, size{0, 0, 0}; };

// Permutes the voxels inside one block (a random permutation of its voxels).
void shuffle_block(float* p, Dims3 d, const Box3& block, Rng& rng);
// `blocks` blocks of side max(1, d/div) at uniform positions, each shuffled; returns the blocks.
std::vector<Box3> local_pixel_shuffle(float* p, Dims3 d, int blocks, int div, Rng& rng);

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
