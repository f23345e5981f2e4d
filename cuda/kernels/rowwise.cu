// Row-wise ops on [rows, cols]: L2 normalization and a stable log-sum-exp.
//
// One 128-thread block per row (rows are 128 to ~20,000 wide here), grid-striding over rows; each block
// reduces in double with cub::BlockReduce and broadcasts through shared memory. Same rules as the CPU
// backend: l2norm saves norms = max(|x|, eps), the divisor used; the backward tells a clamped row by
// |y|^2 < 1 - 1e-4 (then y = x / eps is linear in x and the projection term drops). logsumexp subtracts the
// row maximum first; a row whose maximum is infinite returns it, and its backward is 0 for a -inf row.
#include <cuda/std/limits>

#include "cuda/kernels/common.cuh"
#include "cuda/kernels/kernels.h"

namespace hdssl::cuda::kernels {

constexpr int kRowThreads = 128;
constexpr double kUnitTolerance = 1e-4;


// ---------------------------------------------------------------- kernels
template <class T>
__global__ void l2norm_forward_kernel(const T* x, T* y, T* norms, int64_t rows, int64_t cols, double eps) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    double ss = 0.0;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) ss += double(xr[j]) * double(xr[j]);
    ss = block_all_reduce<kRowThreads>(ss, ::cuda::std::plus<double>());
    const double n = fmax(sqrt(ss), eps);
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) y[r * cols + j] = T(double(xr[j]) / n);
    if (threadIdx.x == 0) norms[r] = T(n);
  }
}

template <class T>
__global__ void l2norm_backward_kernel(const T* dy, const T* y, const T* norms, T* dx, int64_t rows, int64_t cols) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* yr = y + r * cols;
    const T* gr = dy + r * cols;
    double yy = 0.0, yg = 0.0;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      yy += double(yr[j]) * double(yr[j]);
      yg += double(yr[j]) * double(gr[j]);
    }
    yy = block_all_reduce<kRowThreads>(yy, ::cuda::std::plus<double>());
    yg = block_all_reduce<kRowThreads>(yg, ::cuda::std::plus<double>());
    if (yy < 1.0 - kUnitTolerance) yg = 0.0;  // clamped row
    const double inv = 1.0 / double(norms[r]);
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
      dx[r * cols + j] = T((double(gr[j]) - double(yr[j]) * yg) * inv);
  }
}

template <class T>
__global__ void logsumexp_rows_kernel(const T* x, T* out, int64_t rows, int64_t cols) {
  const double inf = ::cuda::std::numeric_limits<double>::infinity();
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    double m = -inf;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) m = fmax(m, double(xr[j]));
    m = block_all_reduce<kRowThreads>(m, MaxOp());
    if (isinf(m)) {  // empty row, all -inf, or a +inf entry
      if (threadIdx.x == 0) out[r] = T(m);
      continue;
    }
    double s = 0.0;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s += exp(double(xr[j]) - m);
    s = block_all_reduce<kRowThreads>(s, ::cuda::std::plus<double>());
    if (threadIdx.x == 0) out[r] = T(m + log(s));
  }
}

template <class T>
__global__ void logsumexp_rows_backward_kernel(const T* x, const T* out, const T* dout, T* dx, int64_t rows,
                                               int64_t cols) {
  const int64_t n = rows * cols;
  for (int64_t i = thread_index(); i < n; i += thread_stride()) {
    const int64_t r = i / cols;
    const double lse = double(out[r]);
    dx[i] = (isinf(lse) && lse < 0) ? T(0) : T(double(dout[r]) * exp(double(x[i]) - lse));
  }
}

// ---------------------------------------------------------------- launchers
inline unsigned row_grid(int64_t rows) { return unsigned(rows < 65536 ? (rows < 1 ? 1 : rows) : 65536); }

template <class T>
void l2norm_forward(const T* x, T* y, T* norms, int64_t rows, int64_t cols, double eps) {
  if (rows == 0) return;
  l2norm_forward_kernel<<<row_grid(rows), kRowThreads, 0, stream()>>>(x, y, norms, rows, cols, eps);
  cudaCheckLaunch();
}

template <class T>
void l2norm_backward(const T* dy, const T* y, const T* norms, T* dx, int64_t rows, int64_t cols) {
  if (rows == 0) return;
  l2norm_backward_kernel<<<row_grid(rows), kRowThreads, 0, stream()>>>(dy, y, norms, dx, rows, cols);
  cudaCheckLaunch();
}

template <class T>
void logsumexp_rows(const T* x, T* out, int64_t rows, int64_t cols) {
  if (rows == 0) return;
  logsumexp_rows_kernel<<<row_grid(rows), kRowThreads, 0, stream()>>>(x, out, rows, cols);
  cudaCheckLaunch();
}

template <class T>
void logsumexp_rows_backward(const T* x, const T* out, const T* dout, T* dx, int64_t rows, int64_t cols) {
  if (rows * cols == 0) return;
  logsumexp_rows_backward_kernel<<<grid_for(rows * cols), kThreads, 0, stream()>>>(x, out, dout, dx, rows, cols);
  cudaCheckLaunch();
}

#define HDSSL_INSTANTIATE(T)                                                              \
  template void l2norm_forward<T>(const T*, T*, T*, int64_t, int64_t, double);            \
  template void l2norm_backward<T>(const T*, const T*, const T*, T*, int64_t, int64_t);   \
  template void logsumexp_rows<T>(const T*, T*, int64_t, int64_t);                        \
  template void logsumexp_rows_backward<T>(const T*, const T*, const T*, T*, int64_t, int64_t);
HDSSL_INSTANTIATE(float)
HDSSL_INSTANTIATE(double)
#undef HDSSL_INSTANTIATE

}  // namespace hdssl::cuda::kernels
