// The CUDA copier of engine/batch_uploader.h: a batch goes host -> pinned staging buffer (a memcpy on the
// calling thread) -> device, the second leg as cudaMemcpyAsync on a copy stream of its own, so that the
// copy engine moves batch k+1 while the compute stream (cuda/context.h) runs step k. No call here waits
// for the compute stream, so the step loop keeps its count of host syncs (engine/backend.h) at 0.
//
// Per slot (two, as the uploader's ring) the copier keeps, created once and reused, never freed inside
// the training loop:
//   - a pinned host buffer (cudaHostAlloc) holding the slot's whole batch, packed at 256-byte offsets;
//     it grows (free + alloc) only when a batch is larger than any before;
//   - event `copied`, recorded on the copy stream after the slot's copies: make_ready() makes the compute
//     stream wait on it (cudaStreamWaitEvent), so the step's kernels start after their batch has arrived;
//   - event `released`, recorded on the compute stream by retire() (or by copy() itself when the ring asks
//     for after_all_queued_work): the copy stream waits on it before writing the slot's device tensors, so
//     a copy never overwrites a batch that queued kernels still read, nor memory the caching allocator
//     just handed over from a tensor whose kernels are still queued (cuda/allocator.h assumes one stream).
// The host reuses a slot's staging buffer only after that slot's previous copy has read it: if
// cudaEventQuery(copied) says it has not, the host waits (cudaEventSynchronize, counted in host_waits()).
// That copy was issued two batches earlier and waited for the step before it, so the host waits only when
// it runs about three steps ahead of the GPU: back-pressure, not a sync of the compute stream.
#pragma once
#include <memory>

#include "engine/batch_uploader.h"

namespace hdssl::cuda {

// A new copier for the current CUDA context (valid after init() returned true).
std::unique_ptr<UploadCopier> make_async_upload_copier();

// Registers make_async_upload_copier for DeviceKind::CUDA (called by init()).
void register_async_upload();

}  // namespace hdssl::cuda
