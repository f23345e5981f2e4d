// HostBlockCache: the CPU backend's caching allocator. Freed blocks of 64 KiB and more wait in free lists
// keyed by a size class (8 classes per power of two, so a block is at most 1/8 larger than asked for)
// and are handed out again to the next request of the same class. A training step allocates the same
// sizes every iteration (activations, their gradients, the parameter gradients), and a fresh block from
// the system costs a page fault per 4 KiB page on first touch (a 28 MB weight gradient: ~7,000 faults);
// a cached block is already mapped.
//
// Blocks under 64 KiB go straight to aligned_alloc / free (glibc keeps those in its own bins). The cache
// holds at most `cap_bytes` of free blocks; a block freed beyond it goes back to the system, and when the
// system refuses a request the cache is emptied and the request tried once more. Thread-safe (one mutex).
//
// HDSSL_CPU_ALLOC_CACHE=0 turns it off (every block straight from and back to the system, so AddressSanitizer
// sees each use-after-free); builds with AddressSanitizer default to off. HDSSL_CPU_ALLOC_CACHE_MB sets the
// cap (default 4096).
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

namespace hdssl::cpu {

class HostBlockCache {
 public:
  static constexpr size_t kMinCachedBytes = size_t(64) << 10;
  HostBlockCache(bool enabled, size_t cap_bytes) : enabled_(enabled), cap_(cap_bytes) {}
  ~HostBlockCache() { release(); }
  HostBlockCache(const HostBlockCache&) = delete;
  HostBlockCache& operator=(const HostBlockCache&) = delete;

  void* allocate(size_t bytes);          // 64-byte aligned; throws hdssl::Error when the system has no memory
  void deallocate(void* p, size_t bytes);  // `bytes` as given to allocate
  void release();                        // every cached block back to the system

  struct Stats {
    int64_t hits = 0, misses = 0;  // cached-size requests served from the cache / from the system
    size_t cached_bytes = 0;       // free blocks waiting now
  };
  Stats stats() const;
  bool enabled() const { return enabled_; }

  static size_t size_class(size_t bytes);  // the block size actually allocated for `bytes`
  static HostBlockCache& instance();       // the CPU backend's, configured from the environment once

 private:
  void* system_allocate(size_t bytes);
  const bool enabled_;
  const size_t cap_;
  mutable std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;  // size class -> free blocks of that size
  Stats stats_;
};

}  // namespace hdssl::cpu
