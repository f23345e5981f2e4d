// The CUDA context of the backend: one device, one stream, one cuBLAS and one cuDNN handle bound to that
// stream, the caching allocator, and the TF32 switch. Every kernel, library call and copy is queued on
// `stream`, so work is ordered without host synchronization; the host waits only in copy_to_host and
// synchronize().
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "cuda/allocator.h"

namespace hdssl::cuda {

struct Context {
  int device = 0;
  int sm_count = 0;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  cudnnHandle_t cudnn = nullptr;
  void* cublas_workspace = nullptr;  // cuBLAS's fixed workspace (cublasSetWorkspace; CUDA-graph capture)
  size_t cublas_workspace_bytes = 0;
  CachingAllocator alloc;
  // TF32 tensor cores for float32 convolutions and GEMMs. Off by default (exact float32, what parity
  // tests need); the bench may switch it on to compare with PyTorch's defaults.
  bool allow_tf32 = false;
  // cuDNN algorithm choice per convolution shape: time every algorithm once (cudnnFind*Ex, the default,
  // like torch.backends.cudnn.benchmark) or take cuDNN's heuristic ranking (cudnnGet*_v7, instant).
  bool conv_exhaustive_search = true;

  explicit Context(int device);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
};

// The one context (valid after init() returned true; throws hdssl::Error before).
Context& ctx();
bool has_context();

// Switches TF32 for float32 convolutions (cuDNN) and matmuls (cuBLAS). Changes the conv algorithm cache key.
void set_allow_tf32(bool allow);

// Switches between timed (true) and heuristic (false) cuDNN algorithm choice; part of the cache key.
void set_conv_exhaustive_search(bool exhaustive);

// Blocks a kernel launch uses for n elements with a grid-stride loop of 256-thread blocks.
inline unsigned grid_for(int64_t n, int threads = 256) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > 65536) b = 65536;
  return unsigned(b);
}

}  // namespace hdssl::cuda
