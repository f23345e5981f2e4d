// Parity of the tiled symmetric InfoNCE (cuda/kernels/infonce.cu) with the CPU's tiled version, forward
// (loss, lse_a, lse_b) and backward (dza, dzb), on unit vectors; the CUDA tile height is varied so that
// blocks straddle the za / zb boundary and the last block is partial. Also the paper's size once
// (N = 10,240 rows of 128-d), float32.
#include <cmath>

#include "cuda/kernels/kernels.h"
#include "tests/cuda/parity.h"

namespace hdssl::test {
namespace {

Tensor unit_rows(int64_t N, int64_t D, DType t, Rng& rng) {
  std::vector<double> v(size_t(N * D));
  for (int64_t i = 0; i < N; ++i) {
    double ss = 0;
    for (int64_t j = 0; j < D; ++j) { v[size_t(i * D + j)] = rng.normal(); ss += v[size_t(i * D + j)] * v[size_t(i * D + j)]; }
    for (int64_t j = 0; j < D; ++j) v[size_t(i * D + j)] /= std::sqrt(ss);
  }
  return Tensor::from_vector(v, {N, D}).to(t);
}

void check_infonce(int64_t N, int64_t D, DType t, Rng& rng, double dloss_value) {
  Tensor za = unit_rows(N, D, t, rng), zb = unit_rows(N, D, t, rng);
  const double tau = 0.1;
  expect_parity([&](Device d) {
    Backend& b = backend(d);
    Tensor loss = output({1}, t, d), la = output({N}, t, d), lb = output({N}, t, d);
    b.infonce_forward(on(d, za), on(d, zb), tau, loss, la, lb);
    Tensor dza = output({N, D}, t, d), dzb = output({N, D}, t, d);
    b.infonce_backward(on(d, za), on(d, zb), tau, la, lb, Tensor::full({1}, dloss_value, t, d), dza, dzb);
    return std::vector<Tensor>{loss, la, lb, dza, dzb};
  }, {tol(t, 2e-5, 2e-6, 1e-12, 1e-12), tol(t, 2e-5, 2e-6, 1e-12, 1e-12), tol(t, 2e-5, 2e-6, 1e-12, 1e-12),
      tol(t, 1e-6, 1e-4, 1e-14, 1e-10)},
     "infonce N " + std::to_string(N) + " D " + std::to_string(D) + " " + dtype_name(t));
}

TEST(CudaInfoNCE, ForwardBackwardAcrossTileSizes) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(80);
  for (int64_t tile : {1, 5, 37, 1024}) {
    if (!selftest()) cuda::kernels::set_infonce_tile_rows(tile);
    for (DType t : kFloatTypes) {
      check_infonce(1, 4, t, rng, 1.0);
      check_infonce(37, 16, t, rng, 0.7);
      check_infonce(200, 128, t, rng, 1.0);
    }
  }
  if (!selftest()) cuda::kernels::set_infonce_tile_rows(1024);
}

TEST(CudaInfoNCE, PaperSizeFloat32) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(81);
  check_infonce(10240, 128, DType::F32, rng, 1.0);
}

}  // namespace
}  // namespace hdssl::test
