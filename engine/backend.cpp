// The backend registry: one checked Backend (engine/dispatch.cpp) per device kind, around that device's
// implementation. The CPU backend is made on first use; CUDA registers its implementation from cuda/.
#include "engine/backend.h"

#include <atomic>

#include "engine/cpu/cpu_backend.h"
#include "engine/profile.h"

namespace hdssl {
namespace {
Backend* g_cuda = nullptr;
std::atomic<uint64_t> g_host_syncs{0};
std::atomic<bool> g_deterministic{false};
}  // namespace

void set_deterministic(bool on) { g_deterministic = on; }
bool deterministic() { return g_deterministic.load(); }

namespace {
thread_local bool t_capturing = false;
thread_local Device t_capture_device = Device::cpu();
thread_local BackendImpl* t_redirected = nullptr;  // the implementation the recorder wraps (for the record)
thread_local BackendImpl* t_recorder = nullptr;    // receives the calls on t_capture_device while capturing
thread_local std::vector<Tensor>* t_keep = nullptr;
}  // namespace

void keep_alive_while_capturing(const Tensor& t) {
  if (t_keep) t_keep->push_back(t);
}

// Every Backend of the capture's device goes to the recorder (the CPU has two: plain and profiled), so a
// profile switched on or off during a capture cannot let a call run unrecorded.
BackendImpl* Backend::ImplRef::get() const {
  return t_recorder && impl != t_recorder && impl->device() == t_capture_device ? t_recorder : impl;
}
BackendImpl& backend_impl(Backend& b) { return *b.impl_.impl; }

void set_thread_capture(Device device, BackendImpl* redirected, BackendImpl* recorder, std::vector<Tensor>* keep) {
  HDSSL_CHECK(!t_capturing) << "a step capture is already open on this thread (on " << t_capture_device.str() << ")";
  t_capturing = true;
  t_capture_device = device;
  t_redirected = redirected;
  t_recorder = recorder;
  t_keep = keep;
}
void clear_thread_capture() {
  t_capturing = false;
  t_redirected = t_recorder = nullptr;
  t_keep = nullptr;
}
bool thread_capturing() { return t_capturing; }

void refuse_inside_capture(const char* call) {
  if (t_capturing)
    throw Error(std::string("host read inside a captured step: ") + call + " while capturing the step on " +
                t_capture_device.str() +
                " (a captured step runs nothing when captured; read the value after a replay instead)");
}

uint64_t host_sync_count() { return g_host_syncs.load(); }
void count_host_sync() { g_host_syncs.fetch_add(1, std::memory_order_relaxed); }

void register_backend(DeviceKind kind, BackendImpl* impl) {
  HDSSL_CHECK(kind == DeviceKind::CUDA && impl) << "only the CUDA backend registers itself";
  HDSSL_CHECK(!g_cuda) << "a CUDA backend is already registered";
  g_cuda = new Backend(*impl);  // never destroyed, like the implementation (see cuda/backend.cpp)
}

bool cuda_available() { return g_cuda != nullptr; }

// A query with no arguments, so no contract to check: defined here rather than in dispatch.cpp.
int64_t Backend::free_memory() { return impl_->free_memory(); }

Backend& backend(Device device) {
  if (device.is_cpu()) {
    static CpuBackend cpu_impl;
    static Backend cpu(cpu_impl);
    static Backend cpu_profiled(profile::wrap(cpu_impl));  // engine/profile.h: times each call
    return profile::enabled() ? cpu_profiled : cpu;
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
