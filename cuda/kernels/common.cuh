// Shared device helpers for the kernel files: grid-stride indexing (64-bit), the context's stream,
// a CUB sum of f(i) over an index range, and one deterministic "per-channel partial sums" kernel that
// channel_sum, batch norm and soft Dice all build on.
//
// Per-channel sums: a tensor viewed as [outer, C, inner] is reduced over outer and inner for each c.
// One block row (blockIdx.y = c) splits the outer*inner elements of channel c into `chunks` contiguous
// pieces (blockIdx.x), each block writes K double partials, and a small finalize kernel adds the chunks
// in a fixed order: no atomics, the same result every run, and enough blocks to fill the GPU even when
// C is 32 and each channel holds 5 M voxels.
#pragma once
#include <cub/block/block_reduce.cuh>
#include <cub/device/device_reduce.cuh>
#include <cuda/std/functional>
#include <thrust/iterator/counting_iterator.h>

#include <cstdint>

#include "cuda/allocator.h"
#include "cuda/check.h"
#include "cuda/context.h"

namespace hdssl::cuda::kernels {

constexpr int kThreads = 256;

inline cudaStream_t stream() { return ctx().stream; }

__device__ inline int64_t thread_index() { return int64_t(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ inline int64_t thread_stride() { return int64_t(blockDim.x) * gridDim.x; }

// The channel of flat element i of an [outer, C, inner] tensor; 32-bit division when the whole tensor
// has fewer than 2^32 elements (`small`, uniform over the launch), which is several times cheaper.
__device__ inline int64_t channel_of(int64_t i, int64_t inner, int64_t C, bool small) {
  if (small) return int64_t((uint32_t(i) / uint32_t(inner)) % uint32_t(C));
  return (i / inner) % C;
}
inline bool fits_u32(int64_t n) { return n < (int64_t(1) << 32); }

// d_out[0] = sum_{i < n} op(i) in double, on the stream (CUB's deterministic device-wide reduction).
template <class Op>
void reduce_sum_to_double(int64_t n, Op op, double* d_out) {
  size_t bytes = 0;
  thrust::counting_iterator<int64_t> first(0);
  cudaCheck(cub::DeviceReduce::TransformReduce(nullptr, bytes, first, d_out, n, ::cuda::std::plus<double>(), op, 0.0,
                                               stream()));
  DeviceBuffer tmp(bytes);
  cudaCheck(cub::DeviceReduce::TransformReduce(tmp.get(), bytes, first, d_out, n, ::cuda::std::plus<double>(), op,
                                               0.0, stream()));
}

struct MaxOp {
  __device__ double operator()(double a, double b) const { return a > b ? a : b; }
};

// Block-wide reduction of v (sum: ::cuda::std::plus<double>(), max: MaxOp()) returned to every thread of
// a block of Threads threads. Ends with a barrier, so it can be called again at once.
template <int Threads, class Op>
__device__ double block_all_reduce(double v, Op op) {
  using BlockReduce = cub::BlockReduce<double, Threads>;
  __shared__ typename BlockReduce::TempStorage tmp;
  __shared__ double result;
  const double r = BlockReduce(tmp).Reduce(v, op);
  if (threadIdx.x == 0) result = r;
  __syncthreads();
  const double out = result;
  __syncthreads();  // tmp and result may be reused by the next call
  return out;
}

// How many chunks each channel's outer*inner elements are split into (grid.x of channel_partials).
inline int channel_chunks(int64_t per_channel, int64_t channels) {
  int64_t by_work = (per_channel + 16 * kThreads - 1) / (16 * kThreads);  // >= 16 elements per thread
  int64_t by_grid = (2048 + channels - 1) / channels;                      // ~2048 blocks in all
  int64_t c = by_work < by_grid ? by_work : by_grid;
  return int(c < 1 ? 1 : (c > 1024 ? 1024 : c));
}

// partials[(c * chunks + chunk) * K + k] = sum over this chunk of channel c of op(index, c)[k].
// Op: struct with `__device__ void operator()(int64_t idx, int64_t c, double (&acc)[K]) const` adding into acc.
template <int K, class Op>
__global__ void channel_partials_kernel(Op op, int64_t outer, int64_t C, int64_t inner, int chunks, double* partials) {
  using BlockReduce = cub::BlockReduce<double, kThreads>;
  __shared__ typename BlockReduce::TempStorage tmp;
  const int64_t c = blockIdx.y, chunk = blockIdx.x;
  const int64_t M = outer * inner, per = (M + chunks - 1) / chunks;
  const int64_t begin = chunk * per, end = begin + per < M ? begin + per : M;
  double acc[K];
  for (int k = 0; k < K; ++k) acc[k] = 0.0;
  // j = n * inner + i walks by blockDim.x; (n, i) is advanced without a 64-bit division per element.
  const int64_t j0 = begin + threadIdx.x;
  const int64_t step_n = int64_t(blockDim.x) / inner, step_i = int64_t(blockDim.x) - step_n * inner;
  int64_t n = j0 / inner, i = j0 - n * inner;
  for (int64_t j = j0; j < end; j += blockDim.x) {
    op((n * C + c) * inner + i, c, acc);
    n += step_n;
    i += step_i;
    if (i >= inner) {
      i -= inner;
      ++n;
    }
  }
  for (int k = 0; k < K; ++k) {
    double s = BlockReduce(tmp).Sum(acc[k]);
    if (threadIdx.x == 0) partials[(c * chunks + chunk) * K + k] = s;
    __syncthreads();  // tmp is reused by the next k
  }
}

template <int K, class Op>
void launch_channel_partials(Op op, int64_t outer, int64_t C, int64_t inner, int chunks, double* partials) {
  HDSSL_CHECK(C <= 65535) << "channel reduction: " << C << " channels exceed the grid's y limit";
  const dim3 grid{unsigned(chunks), unsigned(C), 1u};
  channel_partials_kernel<K><<<grid, kThreads, 0, stream()>>>(op, outer, C, inner, chunks, partials);
  cudaCheckLaunch();
}

// Sum of the chunks of channel c, component k (a fixed order: deterministic).
template <int K>
__device__ inline double sum_chunks(const double* partials, int64_t c, int chunks, int k) {
  double s = 0.0;
  for (int j = 0; j < chunks; ++j) s += partials[(c * chunks + j) * K + k];
  return s;
}

}  // namespace hdssl::cuda::kernels
