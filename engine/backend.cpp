// The backend registry: one backend per device kind. The CPU backend registers itself on first use.
#include "engine/backend.h"

#include "engine/cpu/cpu_backend.h"
#include "engine/profile.h"

namespace hdssl {
namespace {
Backend* g_cuda = nullptr;
}

void register_backend(DeviceKind kind, Backend* b) {
  HDSSL_CHECK(kind == DeviceKind::CUDA) << "only the CUDA backend registers itself";
  g_cuda = b;
}

bool cuda_available() { return g_cuda != nullptr; }

Backend& backend(Device device) {
  if (device.is_cpu()) {
    static CpuBackend cpu;
    return profile::enabled() ? profile::wrap(cpu) : cpu;  // engine/profile.h
  }
  if (!g_cuda)
    throw Error("device " + device.str() + " requested, but no CUDA device is available (built " +
#ifdef HDSSL_HAVE_CUDA
                std::string("with CUDA; no device found or hdssl::cuda::init() not called)"));
#else
                std::string("without CUDA support)"));
#endif
  // One CUDA backend serves one device: refuse cuda:N for N > 0 rather than silently run on device 0.
  HDSSL_CHECK(device.index == 0) << "device " << device.str()
                                 << " requested: hdssl drives one GPU per process; use cuda:0 (and "
                                    "CUDA_VISIBLE_DEVICES=N to pick the physical GPU)";
  return *g_cuda;
}

}  // namespace hdssl
