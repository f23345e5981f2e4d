// CPU memory: 64-byte aligned heap blocks (good for SIMD loops and OpenBLAS) through the caching allocator
// of host_cache.h (blocks of 64 KiB and more are reused instead of page-faulted afresh every step), plain
// memcpy transfers.
#include <cstring>

#include "engine/cpu/blas.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/cpu/host_cache.h"

namespace hdssl {

CpuBackend::CpuBackend() { blas::select_core(); }

void* CpuBackend::allocate(size_t bytes) { return cpu::HostBlockCache::instance().allocate(bytes); }
void CpuBackend::deallocate(void* ptr, size_t bytes) { cpu::HostBlockCache::instance().deallocate(ptr, bytes); }
void CpuBackend::copy_from_host(void* dst, const void* src, size_t n) { std::memcpy(dst, src, n); }
void CpuBackend::copy_to_host(void* dst, const void* src, size_t n) { std::memcpy(dst, src, n); }
void CpuBackend::copy_device(void* dst, const void* src, size_t n) { std::memcpy(dst, src, n); }

}  // namespace hdssl
