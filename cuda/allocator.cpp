#include "cuda/allocator.h"

#include <algorithm>

#include "cuda/check.h"

namespace hdssl::cuda {

size_t CachingAllocator::size_class(size_t bytes) {
  constexpr size_t kSmallStep = 512, kLargeStep = size_t(2) << 20, kLarge = size_t(1) << 20;
  if (bytes < kLarge) return (bytes + kSmallStep - 1) / kSmallStep * kSmallStep;
  return (bytes + kLargeStep - 1) / kLargeStep * kLargeStep;
}

CachingAllocator::~CachingAllocator() {
  std::lock_guard<std::mutex> lock(mu_);
  release_cache_locked();
  // Blocks still in use at exit are left to the driver: their tensors may outlive this object.
}

void* CachingAllocator::allocate(size_t bytes) {
  if (bytes == 0) return nullptr;
  const size_t want = size_class(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  st_.num_allocations++;
  void* ptr = nullptr;
  size_t cap = 0;
  auto it = free_.lower_bound(want);  // smallest cached block that is large enough
  if (it != free_.end() && it->first <= want + want / 4) {
    cap = it->first;
    ptr = it->second;
    free_.erase(it);
  } else {
    ptr = cuda_malloc_locked(want);
    cap = want;
  }
  in_use_[ptr] = cap;
  st_.bytes_in_use += cap;
  st_.peak_bytes_in_use = std::max(st_.peak_bytes_in_use, st_.bytes_in_use);
  return ptr;
}

void* CachingAllocator::cuda_malloc_locked(size_t bytes) {
  void* ptr = nullptr;
  cudaError_t e = cudaMalloc(&ptr, bytes);
  if (e == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();  // clear the error of the failed malloc, give the cache back, try once more
    release_cache_locked();
    e = cudaMalloc(&ptr, bytes);
  }
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    HDSSL_CHECK(false) << "cudaMalloc of " << bytes << " bytes failed (" << cudaGetErrorString(e) << "); "
                       << st_.bytes_in_use << " bytes in use, " << st_.bytes_reserved << " reserved";
  }
  st_.num_cuda_malloc++;
  st_.bytes_reserved += bytes;
  st_.peak_bytes_reserved = std::max(st_.peak_bytes_reserved, st_.bytes_reserved);
  return ptr;
}

void* CachingAllocator::allocate_uncached(size_t bytes) {
  if (bytes == 0) return nullptr;
  std::lock_guard<std::mutex> lock(mu_);
  void* ptr = cuda_malloc_locked(bytes);
  st_.bytes_in_use += bytes;
  st_.peak_bytes_in_use = std::max(st_.peak_bytes_in_use, st_.bytes_in_use);
  return ptr;
}

void CachingAllocator::free_uncached(void* ptr, size_t bytes) {
  if (!ptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  cudaCheckNoThrow(cudaFree(ptr));  // waits for the device: the search that used it has finished
  st_.num_cuda_free++;
  st_.bytes_in_use -= bytes;
  st_.bytes_reserved -= bytes;
}

void CachingAllocator::deallocate(void* ptr) {
  if (!ptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = in_use_.find(ptr);
  if (it == in_use_.end()) {
    std::fprintf(stderr, "hdssl::cuda::CachingAllocator: deallocate of unknown pointer %p (ignored)\n", ptr);
    return;
  }
  st_.bytes_in_use -= it->second;
  free_.emplace(it->second, ptr);
  in_use_.erase(it);
}

void CachingAllocator::release_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  release_cache_locked();
}

void CachingAllocator::release_cache_locked() {
  // cudaFree waits for the device, so queued kernels that still use a block finish first.
  for (auto& [cap, ptr] : free_) {
    cudaCheckNoThrow(cudaFree(ptr));
    st_.num_cuda_free++;
    st_.bytes_reserved -= cap;
  }
  free_.clear();
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return st_;
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  st_.peak_bytes_in_use = st_.bytes_in_use;
  st_.peak_bytes_reserved = st_.bytes_reserved;
}

}  // namespace hdssl::cuda
