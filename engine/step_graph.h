// Step capture: record one training step's device work once, then replay it without the host code that
// issued it (CUDA graphs; issue 10, item 7). docs/pretraining-step.md section 9 says what
// models::PretrainStep captures; this is the device-independent part.
//
//   begin_capture(device);                 // from now on, this thread's primitive calls on `device`
//   ...the step, unchanged...               // are recorded, not run
//   std::unique_ptr<StepGraph> g = end_capture();
//   g->replay();                           // runs the recorded work again, on the same tensors
//
// What a capture needs from the code it records (what makes it safe):
//  - nothing runs while capturing: a value read on the host then would be stale at every replay, so a host
//    read or write of device memory throws hdssl::Error naming the call (engine/backend.h,
//    refuse_inside_capture); so does a second begin_capture on the thread;
//  - every value that changes from step to step is read from device memory by the kernels (Adam's step
//    count: Adam::count_steps_on_device), never passed as a host argument, which the capture freezes;
//  - every tensor a recorded call names keeps its memory until the graph is destroyed: on the CPU the
//    recorder's closures hold the Tensors (their Storage); on CUDA the caching allocator serves the capture
//    from a pool private to the graph (cuda/allocator.h) that lives as long as the graph;
//  - inputs that change are copied into the tensors the capture read (static inputs) before each replay.
// Allocation itself passes through (the CPU allocates at capture time; so does CUDA, from the private pool).
//
// The CPU implementation is a recorder (engine/recording_backend.h): it makes the rules above testable
// without a GPU and measures the per-call overhead the host code costs. The CUDA one (cuda/step_graph.cpp)
// registers itself from cuda::init() and uses stream capture.
#pragma once
#include <cstddef>
#include <memory>

#include "engine/device.h"

namespace hdssl {

class StepGraph {
 public:
  virtual ~StepGraph() = default;
  virtual void replay() = 0;          // queues the captured work (CUDA: asynchronous, on the backend's stream)
  virtual size_t nodes() const = 0;   // recorded primitive calls (CPU) or graph nodes (CUDA)
  virtual Device device() const = 0;
};

// Opens a capture on the calling thread for `device`. Throws if one is open already.
void begin_capture(Device device);
// Closes it and returns the graph. Throws if none is open (and closes it on any other failure).
std::unique_ptr<StepGraph> end_capture();
// Closes an open capture and drops what it recorded (after an exception in the captured code); no-op when
// none is open. Never throws.
void abort_capture() noexcept;
bool capturing();  // this thread has a capture open

// RAII for the failure path: aborts the capture unless release()d after end_capture().
class CaptureGuard {
 public:
  explicit CaptureGuard(Device device) { begin_capture(device); }
  ~CaptureGuard() { if (open_) abort_capture(); }
  std::unique_ptr<StepGraph> end() { open_ = false; return end_capture(); }
  CaptureGuard(const CaptureGuard&) = delete;
  CaptureGuard& operator=(const CaptureGuard&) = delete;

 private:
  bool open_ = true;
};

// How a device kind captures (CUDA registers one from cuda::init(); the CPU's is built in).
class StepCapturer {
 public:
  virtual ~StepCapturer() = default;
  virtual void begin() = 0;
  virtual std::unique_ptr<StepGraph> end() = 0;
  virtual void abort() noexcept = 0;
};
using StepCapturerFactory = std::unique_ptr<StepCapturer> (*)(Device device);
void register_step_capturer(DeviceKind kind, StepCapturerFactory factory);

}  // namespace hdssl
