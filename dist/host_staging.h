// HostStaging: one growable host buffer that collectives read and write. In a CUDA build, when a GPU is
// present, it is page-locked (cudaHostAlloc), so the device-to-host and host-to-device copies of the
// gradients run at full PCIe/NVLink-C2C speed and any MPI can send it (no CUDA-aware MPI needed); otherwise
// it is ordinary memory.
#pragma once
#include <cstddef>

namespace hdssl::dist {

class HostStaging {
 public:
  HostStaging() = default;
  ~HostStaging();
  HostStaging(const HostStaging&) = delete;
  HostStaging& operator=(const HostStaging&) = delete;

  // At least `bytes` bytes (contents not kept when it grows).
  void* reserve(size_t bytes);
  size_t capacity() const { return bytes_; }
  bool pinned() const { return pinned_; }

 private:
  void release();
  void* data_ = nullptr;
  size_t bytes_ = 0;
  bool pinned_ = false;
};

}  // namespace hdssl::dist
