// CPU memory: 64-byte aligned heap blocks (good for SIMD loops and OpenBLAS), plain memcpy transfers.
#include <cstdlib>
#include <cstring>
#include <new>

#include "engine/cpu/blas.h"
#include "engine/cpu/cpu_backend.h"

namespace hdssl {

CpuBackend::CpuBackend() { blas::select_core(); }

void* CpuBackend::allocate(size_t bytes) {
  size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded);
  if (!p) throw Error("out of host memory: could not allocate " + std::to_string(bytes) + " bytes");
  return p;
}
void CpuBackend::deallocate(void* ptr, size_t) { std::free(ptr); }
void CpuBackend::copy_from_host(void* dst, const void* src, size_t n) { std::memcpy(dst, src, n); }
void CpuBackend::copy_to_host(void* dst, const void* src, size_t n) { std::memcpy(dst, src, n); }
void CpuBackend::copy_device(void* dst, const void* src, size_t n) { std::memcpy(dst, src, n); }

}  // namespace hdssl
