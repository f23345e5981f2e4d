// The CUDA backend's entry point. Programs built with CUDA (HDSSL_HAVE_CUDA) call init() at start-up:
//
//   #ifdef HDSSL_HAVE_CUDA
//   #include "cuda/backend.h"
//   #endif
//   ...
//   #ifdef HDSSL_HAVE_CUDA
//   hdssl::cuda::init();   // false when the machine has no GPU: everything then runs on the CPU
//   #endif
//
// After a true return, hdssl::backend(Device::cuda()) is the CUDA backend and cuda_available() is true.
#pragma once
#include <cstdint>
#include <string>

namespace hdssl::cuda {

// Creates the context (stream, cuBLAS, cuDNN, caching allocator) on device 0 and registers the CUDA
// backend. Returns false, without error, when no CUDA device (or no driver) is present. Idempotent.
// Throws hdssl::Error when a device exists but cannot be set up.
bool init();

// One line naming the device, for logs: "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB), cuDNN 91400, cuBLAS 130000".
std::string device_summary();

// Bytes the backend can still allocate on its device: the driver's free memory (cudaMemGetInfo) plus the
// blocks the caching allocator holds unused (it releases them and retries when cudaMalloc runs out).
// What hdssl::backend(Device::cuda()).free_memory() returns. -1 before init() returned true.
int64_t free_memory();

}  // namespace hdssl::cuda
