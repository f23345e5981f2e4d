// Symmetric InfoNCE with in-view negatives (docs/method.md section 3, step 7), tiled so the similarity
// matrices are never stored whole. Same formulation as the CPU backend (engine/cpu/losses.cpp).
//
// The stacked formulation (S = Z Z^T / tau over Z = [za; zb]) and its backward are derived once, in
// docs/method.md section 3, step 7 ("How both backends compute it").
//
// Forward, per block of R rows (R = 1024 by default): one cuBLAS GEMM S_blk = Z[blk] Z^T / tau (R x 2N,
// 84 MB in float at N = 10,240), then one thread block per row computes the masked log-sum-exp (max pass,
// then sum pass, in double) and the positive. The per-row terms are summed by CUB.
// Backward, per block: recompute S_blk with one GEMM, overwrite it in place with
// H = dloss/(2N) (exp(S - lse_i) + exp(S - lse_j) - 2E), and one GEMM dZ[blk] = H Z / tau written straight
// into dza / dzb. Memory: one R x 2N block plus a copy of Z.
#include <algorithm>
#include <cuda/std/limits>

#include "cuda/kernels/common.cuh"
#include "cuda/kernels/kernels.h"
#include "cuda/matmul_cublas.h"

namespace hdssl::cuda::kernels {

namespace {
int64_t g_tile_rows = 1024;
constexpr int kRowThreads = 256;
}  // namespace

void set_infonce_tile_rows(int64_t rows) {
  HDSSL_CHECK(rows > 0) << "infonce tile rows must be positive, got " << rows;
  g_tile_rows = rows;
}

// ---------------------------------------------------------------- kernels

// One block per row of the tile: lse over j != i, the positive, and term_i = lse_i - S[i, p(i)].
template <class T>
__global__ void infonce_rows_kernel(const T* S, int64_t r0, int64_t rows, int64_t N, T* lse_a, T* lse_b,
                                    double* term) {
  const int64_t N2 = 2 * N;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t i = r0 + r;
    const T* row = S + r * N2;
    double m = -::cuda::std::numeric_limits<double>::infinity();
    for (int64_t j = threadIdx.x; j < N2; j += blockDim.x)
      if (j != i) m = fmax(m, double(row[j]));
    m = block_all_reduce<kRowThreads>(m, MaxOp());
    double s = 0.0;
    for (int64_t j = threadIdx.x; j < N2; j += blockDim.x)
      if (j != i) s += exp(double(row[j]) - m);
    s = block_all_reduce<kRowThreads>(s, ::cuda::std::plus<double>());
    if (threadIdx.x == 0) {
      const double lse = m + log(s);
      if (i < N) lse_a[i] = T(lse);
      else lse_b[i - N] = T(lse);
      term[i] = lse - double(row[(i + N) % N2]);
    }
  }
}

struct ReadDouble {
  const double* p;
  __device__ double operator()(int64_t i) const { return p[i]; }
};

template <class T>
__global__ void infonce_loss_kernel(const double* sum, int64_t N2, T* loss) {
  loss[0] = T(sum[0] / double(N2));
}

// In place: S_blk -> H_blk = dloss/(2N) (exp(S - lse_i) + exp(S - lse_j) - 2 [j == p(i)]), 0 on the diagonal.
template <class T>
__global__ void infonce_grad_tile_kernel(T* S, int64_t r0, int64_t rows, int64_t N, const T* lse_a, const T* lse_b,
                                         const T* dloss) {
  const int64_t N2 = 2 * N, n = rows * N2;
  const double g = double(dloss[0]) / double(N2);
  for (int64_t e = thread_index(); e < n; e += thread_stride()) {
    const int64_t r = e / N2, j = e - r * N2, i = r0 + r;
    if (j == i) {
      S[e] = T(0);
      continue;
    }
    const double s = double(S[e]);
    const double li = i < N ? double(lse_a[i]) : double(lse_b[i - N]);
    const double lj = j < N ? double(lse_a[j]) : double(lse_b[j - N]);
    double h = exp(s - li) + exp(s - lj);  // in double, as the CPU (about 1 ms more at the paper size)
    if (j == (i + N) % N2) h -= 2.0;
    S[e] = T(g * h);
  }
}

// ---------------------------------------------------------------- launchers
namespace {
template <class T>
void stack_rows(const T* za, const T* zb, T* z, int64_t N, int64_t D) {
  const size_t bytes = sizeof(T) * size_t(N) * size_t(D);
  cudaCheck(cudaMemcpyAsync(z, za, bytes, cudaMemcpyDeviceToDevice, stream()));
  cudaCheck(cudaMemcpyAsync(z + N * D, zb, bytes, cudaMemcpyDeviceToDevice, stream()));
}
unsigned row_blocks(int64_t rows) { return unsigned(std::min<int64_t>(std::max<int64_t>(rows, 1), 65536)); }
}  // namespace

template <class T>
void infonce_forward(const T* za, const T* zb, int64_t N, int64_t D, double tau, T* loss, T* lse_a, T* lse_b) {
  HDSSL_CHECK(N > 0 && tau > 0) << "infonce_forward: N > 0 and tau > 0 required";
  const int64_t N2 = 2 * N, tile = std::min(g_tile_rows, N2);
  DeviceBuffer z(sizeof(T) * size_t(N2 * D)), s(sizeof(T) * size_t(tile * N2)), term(sizeof(double) * size_t(N2)),
      acc(sizeof(double));
  stack_rows(za, zb, z.as<T>(), N, D);
  for (int64_t r0 = 0; r0 < N2; r0 += tile) {
    const int64_t rows = std::min(tile, N2 - r0);
    gemm_rowmajor<T>(false, true, rows, N2, D, 1.0 / tau, z.as<T>() + r0 * D, D, z.as<T>(), D, 0.0, s.as<T>(), N2);
    infonce_rows_kernel<<<row_blocks(rows), kRowThreads, 0, stream()>>>(s.as<T>(), r0, rows, N, lse_a, lse_b,
                                                                        term.as<double>());
    cudaCheckLaunch();
  }
  reduce_sum_to_double(N2, ReadDouble{term.as<double>()}, acc.as<double>());
  infonce_loss_kernel<<<1, 1, 0, stream()>>>(acc.as<double>(), N2, loss);
  cudaCheckLaunch();
}

template <class T>
void infonce_backward(const T* za, const T* zb, int64_t N, int64_t D, double tau, const T* lse_a, const T* lse_b,
                      const T* dloss, T* dza, T* dzb) {
  HDSSL_CHECK(N > 0 && tau > 0) << "infonce_backward: N > 0 and tau > 0 required";
  const int64_t N2 = 2 * N, tile = std::min(g_tile_rows, N2);
  DeviceBuffer z(sizeof(T) * size_t(N2 * D)), h(sizeof(T) * size_t(tile * N2));
  stack_rows(za, zb, z.as<T>(), N, D);
  for (int64_t r0 = 0; r0 < N2; r0 += tile) {
    const int64_t rows = std::min(tile, N2 - r0);
    gemm_rowmajor<T>(false, true, rows, N2, D, 1.0 / tau, z.as<T>() + r0 * D, D, z.as<T>(), D, 0.0, h.as<T>(), N2);
    infonce_grad_tile_kernel<<<grid_for(rows * N2), kThreads, 0, stream()>>>(h.as<T>(), r0, rows, N, lse_a, lse_b,
                                                                             dloss);
    cudaCheckLaunch();
    // dZ[r0 : r0+rows] = H Z / tau, split where the block crosses from za's rows into zb's.
    const int64_t a_end = std::min(r0 + rows, N);
    if (a_end > r0)
      gemm_rowmajor<T>(false, false, a_end - r0, D, N2, 1.0 / tau, h.as<T>(), N2, z.as<T>(), D, 0.0, dza + r0 * D, D);
    const int64_t b_begin = std::max(r0, N);
    if (r0 + rows > b_begin)
      gemm_rowmajor<T>(false, false, r0 + rows - b_begin, D, N2, 1.0 / tau, h.as<T>() + (b_begin - r0) * N2, N2,
                       z.as<T>(), D, 0.0, dzb + (b_begin - N) * D, D);
  }
}

#define HDSSL_INSTANTIATE(T)                                                                                    \
  template void infonce_forward<T>(const T*, const T*, int64_t, int64_t, double, T*, T*, T*);                   \
  template void infonce_backward<T>(const T*, const T*, int64_t, int64_t, double, const T*, const T*, const T*, \
                                    T*, T*);
HDSSL_INSTANTIATE(float)
HDSSL_INSTANTIATE(double)
#undef HDSSL_INSTANTIATE

}  // namespace hdssl::cuda::kernels
