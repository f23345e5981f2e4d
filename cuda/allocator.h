// A caching device allocator: after the first training steps no cudaMalloc / cudaFree happens.
//
// Requests are rounded up to a size class (512 B steps below 1 MiB, 2 MiB steps above). A freed block
// goes onto a free list keyed by its capacity and is handed out again to the next request whose class
// fits it (best fit, at most 25 % larger, so a small tensor never pins a huge block). Everything runs on
// one stream, so a block freed by the host can be reused at once: later kernels are queued behind the
// earlier ones that still read it. When cudaMalloc runs out of memory the cache is released and the
// malloc retried once.
//
// Stats (bytes in use, peak, reserved, cudaMalloc count) are what the bench reports and what the
// allocator test checks ("a second identical step does no cudaMalloc").
//
// Private pools, for a captured step (cuda/step_graph.cpp; engine/step_graph.h). Between
// begin_private_pool() and end_private_pool(), allocations made by the capturing thread come from a pool of
// their own: its free blocks first, else a new cudaMalloc (made in relaxed capture mode, so that it does not
// invalidate the capture; a cudaMalloc is not a stream operation and is not captured). A block of the pool
// goes back to the pool only, whoever frees it and whenever, until release_private_pool(): the graph that
// replays writes to it may run at any later time, so no one else may ever get it. A block of the general
// cache freed while a capture is open is set aside too (a captured kernel may read it: the graph runs
// later) and returns to the general cache only at release_private_pool(). While capturing, no block is
// cudaFree'd (cudaFree synchronizes: illegal in a capture): running out of memory then is an error.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace hdssl::cuda {

struct AllocatorStats {
  size_t bytes_in_use = 0;        // capacity of blocks handed out now
  size_t peak_bytes_in_use = 0;   // max of bytes_in_use since the last reset_peak()
  size_t bytes_reserved = 0;      // everything obtained from cudaMalloc and not yet cudaFree'd
  size_t peak_bytes_reserved = 0;
  int64_t num_cuda_malloc = 0;    // cudaMalloc calls since start-up (never reset)
  int64_t num_cuda_free = 0;
  int64_t num_allocations = 0;    // allocate() calls served, cached or not
};

class CachingAllocator {
 public:
  CachingAllocator() = default;
  ~CachingAllocator();  // frees the cache (print-only errors)
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  void* allocate(size_t bytes);          // nullptr for 0 bytes; throws hdssl::Error when memory is exhausted
  void deallocate(void* ptr);            // back onto the free list (nullptr is ignored)
  // For one-off buffers (cuDNN's algorithm search): cudaMalloc'd now, cudaFree'd by free_uncached, never
  // cached, so a large search workspace does not stay reserved. Counted in the stats like any block.
  void* allocate_uncached(size_t bytes);
  void free_uncached(void* ptr, size_t bytes);
  void release_cache();                  // cudaFree every cached free block (the general cache only)

  // Private pools (see above). begin_private_pool returns the pool's id (> 0); one capture at a time.
  int begin_private_pool();
  void end_private_pool();              // the capture is over; the pool keeps its blocks
  void release_private_pool(int pool);  // the graph is gone: the pool's blocks join the general cache
  bool capturing() const;               // a private pool is open
  size_t private_pool_bytes(int pool) const;  // capacity of the blocks the pool holds (in use or free)
  AllocatorStats stats() const;
  void reset_peak();                     // peak := current, for both peaks

  static size_t size_class(size_t bytes);

 private:
  struct Block {
    size_t cap = 0;
    int pool = 0;  // 0: the general cache; else the private pool that owns it
  };
  struct Pool {
    std::multimap<size_t, void*> free;   // the pool's free blocks
    std::vector<std::pair<void*, size_t>> set_aside;  // general blocks freed during its capture
    size_t bytes = 0;                    // capacity of the blocks it owns
  };
  mutable std::mutex mu_;
  std::multimap<size_t, void*> free_;            // capacity -> block (the general cache)
  std::unordered_map<void*, Block> in_use_;      // block -> capacity, owner
  std::map<int, Pool> pools_;
  int capture_pool_ = 0;                          // the pool of the open capture (0: none)
  std::thread::id capture_thread_;
  int next_pool_ = 1;
  AllocatorStats st_;
  static void* take_fit(std::multimap<size_t, void*>& list, size_t want, size_t* cap);
  void release_cache_locked();
  void* cuda_malloc_locked(size_t bytes);
};

// The allocator of the CUDA backend (valid after hdssl::cuda::init() returned true).
CachingAllocator& allocator();
inline AllocatorStats allocator_stats() { return allocator().stats(); }
inline void reset_peak_memory() { allocator().reset_peak(); }

// A scratch buffer from the caching allocator, returned when it goes out of scope (stream order keeps
// that safe). Used for cuDNN workspaces, CUB temporary storage and the InfoNCE tiles.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes, bool uncached = false)
      : ptr_(uncached ? allocator().allocate_uncached(bytes) : allocator().allocate(bytes)),
        bytes_(bytes), uncached_(uncached) {}
  ~DeviceBuffer() {
    if (!ptr_) return;
    if (uncached_) allocator().free_uncached(ptr_, bytes_);
    else allocator().deallocate(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_), uncached_(o.uncached_) {
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  void* get() const { return ptr_; }
  template <class T> T* as() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  bool uncached_ = false;
};

}  // namespace hdssl::cuda
