// Voxel gather (docs/method.md section 3, step 5) and its scatter-add backward.
//
// One thread per output element (row r = b*n + k, channel c): the voxel v = coords[r] maps to v >> level
// at pyramid level L (a shift is floor(v / 2^L) for non-negative v). Consecutive threads take consecutive
// channels of one row, so the writes to out [B*n, C] are coalesced. The backward zeroes dfeat and adds
// each dout element with atomicAdd: at coarse levels many sampled voxels share one feature voxel, and the
// atomics are few (B*n*C, ~5 M at the deepest level) next to the volumes. Deterministic mode
// (engine/backend.h) uses no atomics: one thread per (b, c) feature plane adds its n rows in row order,
// which is the CPU backend's loop (engine/cpu/gather.cpp), so the bits equal the CPU's. It has B*C threads
// (320 at level 0 of the paper's batch, 5,120 at level 4), each n (1,024) dependent adds: slower than the
// atomics, cheap next to the convolutions.
// The CPU validates every coordinate on the host and throws; the GPU cannot without a host sync, so an
// out-of-range coordinate makes its output row NaN (forward) and is skipped (backward): the loss then
// shows it at once instead of reading out of bounds.
#include <cuda/std/limits>

#include "cuda/kernels/common.cuh"
#include "cuda/kernels/compute_type.cuh"
#include "cuda/kernels/kernels.h"

namespace hdssl::cuda::kernels {

// ---------------------------------------------------------------- kernels
struct GatherGeom {
  int64_t B, n, C, X, Y, Z;
  int level;
  // Flat voxel index within one [X,Y,Z] plane of row r, or -1 when out of range.
  __device__ int64_t voxel(const int32_t* coords, int64_t r) const {
    const int64_t x = int64_t(coords[3 * r]) >> level, y = int64_t(coords[3 * r + 1]) >> level,
                  z = int64_t(coords[3 * r + 2]) >> level;
    if (x < 0 || x >= X || y < 0 || y >= Y || z < 0 || z >= Z) return -1;
    return (x * Y + y) * Z + z;
  }
};

template <class T>
__global__ void gather_voxels_kernel(const T* feat, const int32_t* coords, T* out, GatherGeom g) {
  const int64_t total = g.B * g.n * g.C, plane = g.X * g.Y * g.Z;
  for (int64_t i = thread_index(); i < total; i += thread_stride()) {
    const int64_t r = i / g.C, c = i - r * g.C, b = r / g.n;
    const int64_t v = g.voxel(coords, r);
    using C = compute_t<T>;  // bf16 storage: widened and narrowed, as the CPU's widening does
    out[i] = narrow<T>(v < 0 ? ::cuda::std::numeric_limits<C>::quiet_NaN() : widen(feat[(b * g.C + c) * plane + v]));
  }
}

template <class T>
__global__ void gather_voxels_backward_kernel(const T* dout, const int32_t* coords, T* dfeat, GatherGeom g) {
  const int64_t total = g.B * g.n * g.C, plane = g.X * g.Y * g.Z;
  for (int64_t i = thread_index(); i < total; i += thread_stride()) {
    const int64_t r = i / g.C, c = i - r * g.C, b = r / g.n;
    const int64_t v = g.voxel(coords, r);
    if (v >= 0) atomicAdd(dfeat + (b * g.C + c) * plane + v, dout[i]);
  }
}

template <class T>
__global__ void gather_voxels_backward_ordered_kernel(const T* dout, const int32_t* coords, T* dfeat,
                                                      GatherGeom g) {
  const int64_t planes = g.B * g.C, plane = g.X * g.Y * g.Z;
  for (int64_t bc = thread_index(); bc < planes; bc += thread_stride()) {
    const int64_t b = bc / g.C, c = bc - b * g.C;
    T* out = dfeat + bc * plane;
    for (int64_t k = 0; k < g.n; ++k) {
      const int64_t r = b * g.n + k, v = g.voxel(coords, r);
      if (v >= 0) out[v] += dout[r * g.C + c];
    }
  }
}

// ---------------------------------------------------------------- launchers
template <class T>
void gather_voxels(const T* feat, const int32_t* coords, T* out, int64_t B, int64_t n, int64_t C, int64_t X,
                   int64_t Y, int64_t Z, int level) {
  const int64_t total = B * n * C;
  if (total == 0) return;
  gather_voxels_kernel<<<grid_for(total), kThreads, 0, stream()>>>(feat, coords, out,
                                                                   GatherGeom{B, n, C, X, Y, Z, level});
  cudaCheckLaunch();
}

template <class T>
void gather_voxels_backward(const T* dout, const int32_t* coords, T* dfeat, int64_t B, int64_t n, int64_t C,
                            int64_t X, int64_t Y, int64_t Z, int level, bool deterministic) {
  const int64_t feat_n = B * C * X * Y * Z, total = B * n * C;
  if (feat_n == 0) return;
  cudaCheck(cudaMemsetAsync(dfeat, 0, sizeof(T) * size_t(feat_n), stream()));  // all-zero bits are 0.0
  if (total == 0) return;
  const GatherGeom g{B, n, C, X, Y, Z, level};
  if (deterministic)
    gather_voxels_backward_ordered_kernel<<<grid_for(B * C), kThreads, 0, stream()>>>(dout, coords, dfeat, g);
  else
    gather_voxels_backward_kernel<<<grid_for(total), kThreads, 0, stream()>>>(dout, coords, dfeat, g);
  cudaCheckLaunch();
}

#define HDSSL_INSTANTIATE(T)                                                                                  \
  template void gather_voxels<T>(const T*, const int32_t*, T*, int64_t, int64_t, int64_t, int64_t, int64_t,   \
                                 int64_t, int);                                                               \
  template void gather_voxels_backward<T>(const T*, const int32_t*, T*, int64_t, int64_t, int64_t, int64_t,   \
                                          int64_t, int64_t, int, bool);
HDSSL_INSTANTIATE(float)
HDSSL_INSTANTIATE(double)
#undef HDSSL_INSTANTIATE
// bfloat16: the forward only (a copy); the backward's scatter-add stays widened to float32 by the dispatch
template void gather_voxels<bf16>(const bf16*, const int32_t*, bf16*, int64_t, int64_t, int64_t, int64_t, int64_t,
                                  int64_t, int);

}  // namespace hdssl::cuda::kernels
