// Pinned (CUDA build with a GPU) or ordinary host memory for the gradient buffer.
#include "dist/host_staging.h"

#include <cstdlib>
#include <new>

#include "engine/backend.h"
#include "engine/check.h"

#ifdef HDSSL_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace hdssl::dist {

HostStaging::~HostStaging() { release(); }

void HostStaging::release() {
  if (!data_) return;
#ifdef HDSSL_HAVE_CUDA
  if (pinned_) {
    cudaFreeHost(data_);
    data_ = nullptr;
    bytes_ = 0;
    return;
  }
#endif
  std::free(data_);
  data_ = nullptr;
  bytes_ = 0;
}

void* HostStaging::reserve(size_t bytes) {
  if (bytes <= bytes_ && data_) return data_;
  release();
  pinned_ = false;
#ifdef HDSSL_HAVE_CUDA
  if (cuda_available()) {
    const cudaError_t e = cudaHostAlloc(&data_, bytes, cudaHostAllocDefault);
    HDSSL_CHECK(e == cudaSuccess) << "cudaHostAlloc of " << bytes
                                  << " bytes for the gradient staging buffer failed: " << cudaGetErrorString(e);
    pinned_ = true;
    bytes_ = bytes;
    return data_;
  }
#endif
  data_ = std::malloc(bytes == 0 ? 1 : bytes);
  if (!data_) throw std::bad_alloc();
  bytes_ = bytes;
  return data_;
}

}  // namespace hdssl::dist
