// The fast conv3d paths against the GEMM reference path of the CPU backend, on odd shapes.
// Direct (engine/cpu/conv3d_direct.h, float32): sizes not multiples of the vector width (flat mode) and
// multiples (row mode), channel counts not multiples of the tile sizes, lines of 1 and 2 voxels, batch > 1;
// for every instruction set this CPU has. float64 always stays on the reference path.
// Small volumes (engine/cpu/conv3d_small.h, float32 and float64): tiny and odd volumes, batch > 1.
#include <gtest/gtest.h>

#include <omp.h>

#include <cmath>
#include <vector>

#include "engine/backend.h"
#include "engine/cpu/conv3d_direct.h"
#include "engine/cpu/conv3d_small.h"
#include "engine/random.h"
#include "engine/tensor.h"

using namespace hdssl;
namespace cd = hdssl::conv3d_direct;

namespace {

Tensor uniform(const Shape& s, Rng& rng) {
  std::vector<float> v(size_t(numel(s)));
  for (float& e : v) e = float(rng.uniform(-1, 1));
  return Tensor::from_vector(v, s);
}

// max |a - b| over max(1, max |b|): relative to the reference's scale.
double rel_err(const Tensor& a, const Tensor& b) {
  const std::vector<double> va = a.to(DType::F64).to_vector<double>(), vb = b.to(DType::F64).to_vector<double>();
  double err = 0, scale = 1;
  for (size_t i = 0; i < va.size(); ++i) {
    err = std::max(err, std::fabs(va[i] - vb[i]));
    scale = std::max(scale, std::fabs(vb[i]));
  }
  return err / scale;
}

struct Case {
  int64_t N, Ci, Co, X, Y, Z;
};

// Restores the fast path's instruction set whatever a test does.
struct IsaGuard {
  cd::Isa saved = cd::isa();
  ~IsaGuard() { cd::set_isa(saved); }
};

std::vector<cd::Isa> isas() {
  std::vector<cd::Isa> out;
  if (cd::best_isa() >= cd::Isa::avx2) out.push_back(cd::Isa::avx2);
  if (cd::best_isa() >= cd::Isa::avx512) out.push_back(cd::Isa::avx512);
  return out;
}

}  // namespace

TEST(Conv3dDirect, MatchesGemmReferenceOnOddShapes) {
  if (isas().empty()) GTEST_SKIP() << "this CPU has neither AVX2+FMA nor AVX-512: the fast path is off";
  IsaGuard guard;
  const std::vector<Case> cases = {
      {2, 3, 5, 5, 7, 9},     // odd everything: flat mode
      {1, 16, 16, 4, 3, 16},  // Z = 16: row mode for both vector widths
      {2, 17, 9, 3, 5, 8},    // Z = 8: row mode for AVX2, flat for AVX-512; channels not multiples of tiles
      {3, 4, 7, 6, 2, 1},     // lines of one voxel
      {1, 5, 6, 2, 9, 2},     // lines of two voxels
      {2, 8, 13, 3, 4, 33},   // Z = 33: flat, more than two vectors per line
      {1, 1, 1, 1, 1, 1},     // a single voxel: every tap but the centre is padding
  };
  Backend& be = backend(Device::cpu());
  Rng rng(11);
  Conv3dArgs a;
  a.pad = 1;
  for (const Case& c : cases) {
    const Shape xs{c.N, c.Ci, c.X, c.Y, c.Z}, ys{c.N, c.Co, c.X, c.Y, c.Z}, ws{c.Co, c.Ci, 3, 3, 3};
    Tensor x = uniform(xs, rng), w = uniform(ws, rng), b = uniform({c.Co}, rng), dy = uniform(ys, rng);
    cd::set_isa(cd::Isa::none);  // the reference: vol2col + GEMM
    Tensor y_ref = Tensor::empty(ys), dx_ref = Tensor::empty(xs), dw_ref = Tensor::empty(ws);
    be.conv3d_forward(x, w, b, y_ref, a);
    be.conv3d_backward_data(dy, w, dx_ref, a);
    be.conv3d_backward_filter(x, dy, dw_ref, a);
    for (cd::Isa isa : isas()) {
      cd::set_isa(isa);
      SCOPED_TRACE(std::string(cd::isa_name(isa)) + " N,Ci,Co,X,Y,Z = " + std::to_string(c.N) + "," +
                   std::to_string(c.Ci) + "," + std::to_string(c.Co) + "," + std::to_string(c.X) + "," +
                   std::to_string(c.Y) + "," + std::to_string(c.Z));
      Tensor y = Tensor::full(ys, 1e9), dx = Tensor::full(xs, 1e9), dw = Tensor::full(ws, 1e9);  // stale values
      ASSERT_TRUE(cd::forward_always(x, w, b, y, a));
      ASSERT_TRUE(cd::backward_data_always(dy, w, dx, a));
      ASSERT_TRUE(cd::backward_filter_always(x, dy, dw, a));
      EXPECT_LT(rel_err(y, y_ref), 1e-5);
      EXPECT_LT(rel_err(dx, dx_ref), 1e-5);
      EXPECT_LT(rel_err(dw, dw_ref), 1e-5);
      Tensor y_nobias = Tensor::empty(ys), y_nobias_ref = Tensor::empty(ys);
      ASSERT_TRUE(cd::forward_always(x, w, Tensor(), y_nobias, a));
      cd::set_isa(cd::Isa::none);
      be.conv3d_forward(x, w, Tensor(), y_nobias_ref, a);
      EXPECT_LT(rel_err(y_nobias, y_nobias_ref), 1e-5);
    }
  }
}

TEST(Conv3dDirect, DeclinesWhatItDoesNotCover) {
  IsaGuard guard;
  Rng rng(3);
  Conv3dArgs a;
  Tensor x64 = Tensor::zeros({1, 2, 4, 4, 4}, DType::F64), w64 = Tensor::zeros({2, 2, 3, 3, 3}, DType::F64);
  Tensor y64 = Tensor::full({1, 2, 4, 4, 4}, 7.0, DType::F64);
  EXPECT_FALSE(cd::forward_always(x64, w64, Tensor(), y64, a)) << "float64 stays on the reference path";
  EXPECT_EQ(y64.to_vector<double>()[0], 7.0) << "a declined call touches nothing";
  Tensor x = uniform({1, 2, 4, 4, 4}, rng), w1 = uniform({2, 2, 1, 1, 1}, rng), y = Tensor::empty({1, 2, 4, 4, 4});
  Conv3dArgs a0;
  a0.pad = 0;
  EXPECT_FALSE(cd::forward_always(x, w1, Tensor(), y, a0)) << "1x1x1 kernels stay on the GEMM path";
  cd::set_isa(cd::Isa::none);
  Tensor w3 = uniform({2, 2, 3, 3, 3}, rng);
  EXPECT_FALSE(cd::forward_always(x, w3, Tensor(), y, a)) << "the path can be turned off";
}

// The backward-filter tiles sum each weight in a fixed order, whatever the thread count.
TEST(Conv3dDirect, BackwardFilterIndependentOfThreadCount) {
  if (isas().empty()) GTEST_SKIP() << "fast path off on this CPU";
  Rng rng(5);
  const Shape xs{2, 6, 8, 8, 16}, ws{5, 6, 3, 3, 3};
  Tensor x = uniform(xs, rng), dy = uniform({2, 5, 8, 8, 16}, rng);
  Tensor dw1 = Tensor::empty(ws), dw2 = Tensor::empty(ws);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  ASSERT_TRUE(cd::backward_filter_always(x, dy, dw1, Conv3dArgs{}));
  omp_set_num_threads(2);
  ASSERT_TRUE(cd::backward_filter_always(x, dy, dw2, Conv3dArgs{}));
  omp_set_num_threads(saved);
  EXPECT_EQ(dw1.to_vector<float>(), dw2.to_vector<float>());
}

// All samples in one GEMM (deep pyramid levels) against the per-sample GEMM path. The shapes keep
// Co * Ci * 27 under conv3d_small's threshold, so the backend's own calls take the reference path.
TEST(Conv3dSmall, MatchesGemmReferenceInFloat32AndFloat64) {
  IsaGuard guard;
  cd::set_isa(cd::Isa::none);
  const std::vector<Case> cases = {{2, 3, 5, 2, 2, 1}, {3, 7, 4, 1, 3, 2}, {1, 9, 6, 3, 1, 1}, {2, 5, 11, 2, 3, 3}};
  Backend& be = backend(Device::cpu());
  Rng rng(17);
  for (DType dt : {DType::F32, DType::F64}) {
    for (const Case& c : cases) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " N,Ci,Co,X,Y,Z = " + std::to_string(c.N) + "," +
                   std::to_string(c.Ci) + "," + std::to_string(c.Co) + "," + std::to_string(c.X) + "," +
                   std::to_string(c.Y) + "," + std::to_string(c.Z));
      const Shape xs{c.N, c.Ci, c.X, c.Y, c.Z}, ys{c.N, c.Co, c.X, c.Y, c.Z}, ws{c.Co, c.Ci, 3, 3, 3};
      Tensor x = uniform(xs, rng).to(dt), w = uniform(ws, rng).to(dt), b = uniform({c.Co}, rng).to(dt);
      Tensor dy = uniform(ys, rng).to(dt);
      Tensor y_ref = Tensor::empty(ys, dt), dx_ref = Tensor::empty(xs, dt), dw_ref = Tensor::empty(ws, dt);
      Conv3dArgs a;
      be.conv3d_forward(x, w, b, y_ref, a);
      be.conv3d_backward_data(dy, w, dx_ref, a);
      be.conv3d_backward_filter(x, dy, dw_ref, a);
      Tensor y = Tensor::full(ys, 1e9, dt), dx = Tensor::full(xs, 1e9, dt), dw = Tensor::full(ws, 1e9, dt);
      ASSERT_TRUE(conv3d_small::forward_always(x, w, b, y, a));
      ASSERT_TRUE(conv3d_small::backward_data_always(dy, w, dx, a));
      ASSERT_TRUE(conv3d_small::backward_filter_always(x, dy, dw, a));
      const double tol = dt == DType::F32 ? 1e-5 : 1e-12;
      EXPECT_LT(rel_err(y, y_ref), tol);
      EXPECT_LT(rel_err(dx, dx_ref), tol);
      EXPECT_LT(rel_err(dw, dw_ref), tol);
      EXPECT_FALSE(conv3d_small::forward(x, w, b, y, a)) << "below the threshold the backend keeps its own path";
    }
  }
}
