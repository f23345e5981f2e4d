// The CPU backend's caching allocator (see host_cache.h).
#include "engine/cpu/host_cache.h"

#include <cstdlib>
#include <string>

#include "engine/check.h"

namespace hdssl::cpu {
namespace {
constexpr size_t kAlign = 64;

bool built_with_asan() {
#if defined(__SANITIZE_ADDRESS__)
  return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  return true;
#else
  return false;
#endif
#else
  return false;
#endif
}
}  // namespace

size_t HostBlockCache::size_class(size_t bytes) {
  size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
  if (rounded < kMinCachedBytes) return rounded;
  // 8 classes per power of two: round up to a multiple of 2^(floor(log2(rounded)) - 3).
  int top = 63 - __builtin_clzll(static_cast<unsigned long long>(rounded));
  const size_t step = size_t(1) << (top - 3);
  return (rounded + step - 1) / step * step;
}

void* HostBlockCache::system_allocate(size_t bytes) {
  void* p = std::aligned_alloc(kAlign, bytes);
  if (!p && enabled_) {  // the cache may hold what the system now lacks
    release();
    p = std::aligned_alloc(kAlign, bytes);
  }
  if (!p) throw Error("out of host memory: could not allocate " + std::to_string(bytes) + " bytes");
  return p;
}

void* HostBlockCache::allocate(size_t bytes) {
  const size_t size = size_class(bytes);
  if (!enabled_ || size < kMinCachedBytes) return system_allocate(size);
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.find(size);
    if (it != free_.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      stats_.cached_bytes -= size;
      ++stats_.hits;
      return p;
    }
    ++stats_.misses;
  }
  return system_allocate(size);
}

void HostBlockCache::deallocate(void* p, size_t bytes) {
  if (!p) return;
  const size_t size = size_class(bytes);
  if (enabled_ && size >= kMinCachedBytes) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stats_.cached_bytes + size <= cap_) {
      free_[size].push_back(p);
      stats_.cached_bytes += size;
      return;
    }
  }
  std::free(p);
}

void HostBlockCache::release() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [size, blocks] : free_)
    for (void* p : blocks) std::free(p);
  free_.clear();
  stats_.cached_bytes = 0;
}

HostBlockCache::Stats HostBlockCache::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

HostBlockCache& HostBlockCache::instance() {
  // Never destroyed: tensors in static storage may be freed after main returns. The blocks stay reachable
  // through it, so a leak checker does not count them.
  static HostBlockCache* cache = [] {
    const char* on = std::getenv("HDSSL_CPU_ALLOC_CACHE");
    const char* mb = std::getenv("HDSSL_CPU_ALLOC_CACHE_MB");
    const bool enabled = on ? std::string(on) != "0" : !built_with_asan();
    const size_t cap = mb ? size_t(std::strtoull(mb, nullptr, 10)) << 20 : size_t(4096) << 20;
    return new HostBlockCache(enabled, cap);
  }();
  return *cache;
}

}  // namespace hdssl::cpu
