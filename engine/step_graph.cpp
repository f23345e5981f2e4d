// See step_graph.h: the calling thread's open capture, and the capturer of each device kind.
#include "engine/step_graph.h"

#include "engine/backend.h"
#include "engine/recording_backend.h"

namespace hdssl {
namespace {
StepCapturerFactory g_cuda_capturer = nullptr;
thread_local std::unique_ptr<StepCapturer> t_open;  // the capture open on this thread
}  // namespace

void register_step_capturer(DeviceKind kind, StepCapturerFactory factory) {
  HDSSL_CHECK(kind == DeviceKind::CUDA && factory) << "only the CUDA backend registers a step capturer";
  g_cuda_capturer = factory;
}

void begin_capture(Device device) {
  HDSSL_CHECK(!t_open && !thread_capturing()) << "begin_capture(" << device.str()
                                              << "): a step capture is already open on this thread";
  std::unique_ptr<StepCapturer> c;
  if (device.is_cpu()) {
    c = make_recording_capturer(device);
  } else {
    (void)backend(device);  // the registry's message for an unavailable device
    HDSSL_CHECK(g_cuda_capturer) << "begin_capture: no step capturer registered for " << device.str();
    c = g_cuda_capturer(device);
  }
  c->begin();
  t_open = std::move(c);
}

std::unique_ptr<StepGraph> end_capture() {
  HDSSL_CHECK(t_open) << "end_capture: no step capture is open on this thread";
  std::unique_ptr<StepCapturer> c = std::move(t_open);
  try {
    return c->end();
  } catch (...) {
    c->abort();
    throw;
  }
}

void abort_capture() noexcept {
  if (!t_open) return;
  std::unique_ptr<StepCapturer> c = std::move(t_open);
  c->abort();
}

bool capturing() { return t_open != nullptr; }

}  // namespace hdssl
