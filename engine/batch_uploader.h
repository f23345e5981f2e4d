// BatchUploader: moves each training batch (CPU tensors from the data loader) to the step's device. On a
// GPU the copy of batch k+1 runs on a copy engine while step k computes, and no host sync is added (issue
// 10, item 5); on the CPU it is a plain copy. Programs call the same three lines whatever the device:
//
//   std::unique_ptr<BatchUploader> up = make_batch_uploader(device);
//   up->put(batch_0_host_tensors);              // starts the copy of batch 0
//   for (k = 0; ...; ++k) {
//     std::vector<Tensor> b = up->take();       // batch k on the device; device work queued from now on sees it
//     up->put(batch_k+1_host_tensors);          // starts batch k+1's copy; it overlaps the step below
//     step(b);
//   }
//
// Rules of use: put() and take() alternate, starting with put() (one batch in flight at most; anything else
// throws). put() takes contiguous CPU tensors, which it has finished reading when it returns (the caller
// may free or reuse them at once). take() returns the batch of the last put(), in order.
//
// Two slots ("double buffering"): batch k lives in device tensors owned by the uploader, slot k % 2, so
// batch k+1 is written into the other slot while step k reads batch k. A slot's tensors are reused two
// batches later, with two guarantees:
//  - on the host: a slot tensor that anyone else still holds (its Storage is shared) is never overwritten;
//    the uploader allocates a new one for the slot and leaves the held one to its holder;
//  - on the device (the copier's job, e.g. cuda/async_upload.h): the copy into a slot waits for every
//    queued computation that could read the slot's previous batch. When the caller dropped every handle of
//    batch k by the time it takes batch k+1 ("retired"), no later work can name batch k, so the copy of
//    batch k+2 waits only for the work queued before that take(): step k+1 and the copy overlap. Otherwise
//    (a handle still held at that take(), a tensor just allocated, the first two batches) the copy waits
//    for all work queued before the put(): correct, without overlap (counted in Stats::serialized).
// The cross-stream hazard of a caching device allocator (a freshly allocated block may still be read by
// queued work of its previous owner) is the second case: a new slot tensor is only written after all work
// queued before the put().
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/device.h"
#include "engine/tensor.h"

namespace hdssl {

// How one device kind moves bytes: the CPU's copies at once; CUDA's (cuda/async_upload.h) goes through
// pinned staging buffers on its own stream. BatchUploader calls it; nothing else does.
class UploadCopier {
 public:
  static constexpr int kSlots = 2;
  virtual ~UploadCopier() = default;
  // Starts copying host[i] into dst[i] (same shapes and dtypes; host on the CPU, dst on the device, all
  // contiguous) for `slot`. host must be read before this returns. The device writes to dst may begin
  // only after the work queued before the last retire(slot), or, with after_all_queued_work, after all
  // work queued before this call.
  virtual void copy(int slot, const std::vector<Tensor>& host, const std::vector<Tensor>& dst,
                    bool after_all_queued_work) = 0;
  // Device work queued after this call sees the slot's last copy complete.
  virtual void make_ready(int slot) = 0;
  // The slot's batch is no longer used by work queued after this call (see copy()).
  virtual void retire(int slot) = 0;
  // Returns when every copy has finished (before the uploader releases its slot tensors).
  virtual void drain() = 0;
  // Times the host had to wait for a staging buffer's previous copy (the GPU copier; 0 elsewhere).
  virtual int64_t host_waits() const { return 0; }
  // Pinned host memory held for staging (the GPU copier; 0 elsewhere).
  virtual size_t staging_bytes() const { return 0; }
};

class BatchUploader {
 public:
  BatchUploader(Device device, std::unique_ptr<UploadCopier> copier);
  ~BatchUploader();  // waits for copies in flight, then releases the slots
  BatchUploader(const BatchUploader&) = delete;
  BatchUploader& operator=(const BatchUploader&) = delete;

  void put(const std::vector<Tensor>& host);  // starts the copy of a batch (see the rules above)
  std::vector<Tensor> take();                 // the batch of the last put(), on the device
  bool pending() const { return pending_; }   // a batch was put and not taken yet
  Device device() const { return device_; }

  struct Stats {
    int64_t batches = 0;      // put() calls
    int64_t allocations = 0;  // slot tensors allocated (2 x tensors per batch once the shapes are settled)
    int64_t serialized = 0;   // copies that had to wait for all queued work (no overlap; see above)
    int64_t host_waits = 0;   // UploadCopier::host_waits()
    size_t staging_bytes = 0; // UploadCopier::staging_bytes()
  };
  Stats stats() const;

 private:
  struct Slot {
    std::vector<Tensor> tensors;  // the device tensors of the slot's batch
    bool retired = false;         // retire() was called after its last take(): a copy into it may overlap
  };
  Device device_;
  std::unique_ptr<UploadCopier> copier_;
  Slot slots_[UploadCopier::kSlots];
  int next_ = 0;          // the slot of the next put()
  int taken_ = -1;        // the slot of the batch taken last (-1: none yet)
  bool pending_ = false;  // put() done, take() not yet
  Stats stats_;
};

// The uploader for a device: the plain-copy one on the CPU, the registered copier for CUDA (cuda::init()
// registers it). Throws hdssl::Error, like backend(device), for an unavailable device.
std::unique_ptr<BatchUploader> make_batch_uploader(Device device);

// The copier a device kind's backend registers (CUDA: cuda/async_upload.cpp, from cuda::init()).
using UploadCopierFactory = std::unique_ptr<UploadCopier> (*)();
void register_upload_copier(DeviceKind kind, UploadCopierFactory factory);

// The CPU's copier: each copy is Tensor::copy_ at once; nothing is asynchronous.
std::unique_ptr<UploadCopier> make_cpu_upload_copier();

}  // namespace hdssl
