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

// The smallest block of `list` that fits `want` and is at most 25 % larger, taken off the list; nullptr if none.
void* CachingAllocator::take_fit(std::multimap<size_t, void*>& list, size_t want, size_t* cap) {
  auto it = list.lower_bound(want);
  if (it == list.end() || it->first > want + want / 4) return nullptr;
  *cap = it->first;
  void* ptr = it->second;
  list.erase(it);
  return ptr;
}

void* CachingAllocator::allocate(size_t bytes) {
  if (bytes == 0) return nullptr;
  const size_t want = size_class(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  st_.num_allocations++;
  // The capturing thread allocates from its private pool only; everyone else from the general cache.
  const int pool = capture_pool_ && std::this_thread::get_id() == capture_thread_ ? capture_pool_ : 0;
  size_t cap = 0;
  void* ptr = take_fit(pool ? pools_[pool].free : free_, want, &cap);
  if (!ptr) {
    if (pool) {
      // cudaMalloc is not a stream operation (never captured); relaxed mode keeps it from invalidating the
      // capture. The previous mode is restored right after.
      cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
      cudaCheck(cudaThreadExchangeStreamCaptureMode(&mode));
      try {
        ptr = cuda_malloc_locked(want);
      } catch (...) {
        (void)cudaThreadExchangeStreamCaptureMode(&mode);
        throw;
      }
      cudaCheck(cudaThreadExchangeStreamCaptureMode(&mode));
      pools_[pool].bytes += want;
    } else {
      ptr = cuda_malloc_locked(want);
    }
    cap = want;
  }
  in_use_[ptr] = Block{cap, pool};
  st_.bytes_in_use += cap;
  st_.peak_bytes_in_use = std::max(st_.peak_bytes_in_use, st_.bytes_in_use);
  return ptr;
}

void* CachingAllocator::cuda_malloc_locked(size_t bytes) {
  void* ptr = nullptr;
  cudaError_t e = cudaMalloc(&ptr, bytes);
  if (e == cudaErrorMemoryAllocation && !capture_pool_) {  // no cudaFree while a capture is open
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
  const Block b = it->second;
  in_use_.erase(it);
  st_.bytes_in_use -= b.cap;
  auto pool = pools_.find(b.pool);
  if (b.pool && pool != pools_.end()) pool->second.free.emplace(b.cap, ptr);  // back to its pool only
  else if (capture_pool_) pools_[capture_pool_].set_aside.emplace_back(ptr, b.cap);  // a captured kernel may read it
  else free_.emplace(b.cap, ptr);
}

int CachingAllocator::begin_private_pool() {
  std::lock_guard<std::mutex> lock(mu_);
  HDSSL_CHECK(!capture_pool_) << "CachingAllocator: a private pool is already open (one capture at a time)";
  capture_pool_ = next_pool_++;
  capture_thread_ = std::this_thread::get_id();
  pools_[capture_pool_];
  return capture_pool_;
}

void CachingAllocator::end_private_pool() {
  std::lock_guard<std::mutex> lock(mu_);
  capture_pool_ = 0;
}

bool CachingAllocator::capturing() const {
  std::lock_guard<std::mutex> lock(mu_);
  return capture_pool_ != 0;
}

size_t CachingAllocator::private_pool_bytes(int pool) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = pools_.find(pool);
  return it == pools_.end() ? 0 : it->second.bytes;
}

void CachingAllocator::release_private_pool(int pool) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = pools_.find(pool);
  if (it == pools_.end()) return;
  if (capture_pool_ == pool) capture_pool_ = 0;
  // Stream order: work queued before this (the graph's last replay) finishes before any later user of a
  // block runs (one stream), as for any freed block.
  for (auto& [cap, ptr] : it->second.free) free_.emplace(cap, ptr);
  for (auto& [ptr, cap] : it->second.set_aside) free_.emplace(cap, ptr);
  for (auto& [ptr, b] : in_use_)
    if (b.pool == pool) b.pool = 0;  // still held by a tensor: it returns to the general cache when freed
  pools_.erase(it);
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
