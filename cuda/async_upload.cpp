// Pinned staging buffers, a copy stream and two events per slot: see async_upload.h for the ordering.
#include "cuda/async_upload.h"

#include <cuda_runtime.h>

#include <cstring>

#include "cuda/check.h"
#include "cuda/context.h"

namespace hdssl::cuda {
namespace {

constexpr size_t kAlign = 256;  // each tensor's offset in the staging buffer

class AsyncUploadCopier final : public UploadCopier {
 public:
  AsyncUploadCopier() {
    // Non-blocking: the copy stream never waits implicitly for the legacy default stream; every order
    // between it and the compute stream is an explicit event.
    cudaCheck(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
    for (Slot& s : slots_) {
      cudaCheck(cudaEventCreateWithFlags(&s.copied, cudaEventDisableTiming));
      cudaCheck(cudaEventCreateWithFlags(&s.released, cudaEventDisableTiming));
    }
  }

  ~AsyncUploadCopier() override {
    cudaCheckNoThrow(cudaStreamSynchronize(copy_stream_));
    for (Slot& s : slots_) {
      if (s.pinned) cudaCheckNoThrow(cudaFreeHost(s.pinned));
      cudaCheckNoThrow(cudaEventDestroy(s.copied));
      cudaCheckNoThrow(cudaEventDestroy(s.released));
    }
    cudaCheckNoThrow(cudaStreamDestroy(copy_stream_));
  }

  void copy(int slot, const std::vector<Tensor>& host, const std::vector<Tensor>& dst,
            bool after_all_queued_work) override {
    Slot& s = slots_[slot];
    std::vector<size_t> offset(host.size());
    size_t total = 0;
    for (size_t i = 0; i < host.size(); ++i) {
      offset[i] = total;
      total += (host[i].nbytes() + kAlign - 1) / kAlign * kAlign;
    }
    // 1. The staging buffer is free once the slot's previous copy has read it.
    if (s.used) {
      const cudaError_t q = cudaEventQuery(s.copied);
      if (q == cudaErrorNotReady) {
        ++host_waits_;
        cudaCheck(cudaEventSynchronize(s.copied));
      } else {
        cudaCheck(q);
      }
    }
    if (total > s.capacity) {  // the first batch, or a larger one than before
      if (s.pinned) cudaCheck(cudaFreeHost(s.pinned));
      s.pinned = nullptr;
      s.capacity = 0;
      cudaCheck(cudaHostAlloc(&s.pinned, total, cudaHostAllocDefault));
      s.capacity = total;
    }
    // 2. Host -> pinned, on this thread: the caller's tensors are read before copy() returns.
    char* base = static_cast<char*>(s.pinned);
    for (size_t i = 0; i < host.size(); ++i)
      if (host[i].nbytes()) std::memcpy(base + offset[i], host[i].raw(), host[i].nbytes());
    // 3. The device tensors are free once the compute stream has passed `released`.
    //    (Recorded now when the ring asks for it, or when retire() did not run since the last copy.)
    if (after_all_queued_work || !s.retired) cudaCheck(cudaEventRecord(s.released, ctx().stream));
    cudaCheck(cudaStreamWaitEvent(copy_stream_, s.released, 0));
    // 4. Pinned -> device on the copy stream; `copied` marks the end.
    for (size_t i = 0; i < host.size(); ++i)
      if (host[i].nbytes())
        cudaCheck(cudaMemcpyAsync(dst[i].raw(), base + offset[i], host[i].nbytes(), cudaMemcpyHostToDevice,
                                  copy_stream_));
    cudaCheck(cudaEventRecord(s.copied, copy_stream_));
    s.used = true;
    s.retired = false;
  }

  void make_ready(int slot) override { cudaCheck(cudaStreamWaitEvent(ctx().stream, slots_[slot].copied, 0)); }

  void retire(int slot) override {
    cudaCheck(cudaEventRecord(slots_[slot].released, ctx().stream));
    slots_[slot].retired = true;
  }

  void drain() override { cudaCheck(cudaStreamSynchronize(copy_stream_)); }

  int64_t host_waits() const override { return host_waits_; }
  size_t staging_bytes() const override {
    size_t n = 0;
    for (const Slot& s : slots_) n += s.capacity;
    return n;
  }

 private:
  struct Slot {
    void* pinned = nullptr;  // cudaHostAlloc'd staging buffer
    size_t capacity = 0;
    cudaEvent_t copied = nullptr, released = nullptr;
    bool used = false;     // `copied` has been recorded
    bool retired = false;  // `released` was recorded by retire() since the last copy
  };
  cudaStream_t copy_stream_ = nullptr;
  Slot slots_[kSlots];
  int64_t host_waits_ = 0;
};

}  // namespace

std::unique_ptr<UploadCopier> make_async_upload_copier() {
  (void)ctx();  // throws when init() has not run
  return std::make_unique<AsyncUploadCopier>();
}

void register_async_upload() { register_upload_copier(DeviceKind::CUDA, &make_async_upload_copier); }

}  // namespace hdssl::cuda
