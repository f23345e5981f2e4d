// GradientAllreduce: averages every parameter's gradient over the ranks, through one flat buffer.
//
// all_reduce_mean() packs the gradients (grouped by dtype, in the order given) into one host buffer
// (dist/host_staging.h: pinned for GPU tensors), all-reduces it in buckets of `bucket_bytes` (25 MB by
// default, PyTorch DDP's size), divides by the number of ranks and unpacks. It is the one place between
// backward and the gradient norm where ranks meet; afterwards every rank holds the same gradients, so the
// same grad norm, clip factor and Adam update, and parameters stay bitwise identical across ranks.
//
// A parameter with a gradient on some ranks but not on others gets zeros where it is missing (the loss
// did not depend on it there); one with no gradient on any rank keeps none (Adam skips it). With a single
// rank the call returns at once and changes nothing.
//
// GPU gradients go device -> pinned host buffer -> MPI -> device, which works with any MPI. With a
// CUDA-aware MPI build and HDSSL_MPI_CUDA_AWARE=1 (Communicator::accepts_device_buffers) the flat buffer
// stays on the GPU instead and the mean is taken there (x 1/N, the same bits on every rank): compiled only
// against such an MPI and UNVERIFIED - it must pass tests/dist's gradient test with the model on CUDA on a
// machine with several GPUs before anyone relies on it.
//
// Not yet: overlapping the buckets with the backward (it needs a per-parameter hook in autograd); the
// buckets are the unit such an overlap would send.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "autograd/variable.h"
#include "dist/communicator.h"
#include "dist/host_staging.h"

namespace hdssl::dist {

class GradientAllreduce {
 public:
  static constexpr size_t kDefaultBucketBytes = size_t(25) << 20;
  explicit GradientAllreduce(Communicator& comm, size_t bucket_bytes = kDefaultBucketBytes);

  void all_reduce_mean(const std::vector<Variable>& params);

  size_t bucket_bytes() const { return bucket_bytes_; }
  size_t last_bytes() const { return last_bytes_; }       // bytes all-reduced by the last call
  int64_t last_buckets() const { return last_buckets_; }  // MPI calls made by the last call
  bool staging_pinned() const { return staging_.pinned(); }

 private:
  bool reduce_on_device(const std::vector<Variable>& group, size_t count, DType dtype);
  Communicator& comm_;
  size_t bucket_bytes_;
  HostStaging staging_;
  size_t last_bytes_ = 0;
  int64_t last_buckets_ = 0;
};

// FNV-1a hash of the bytes of every parameter value (host copies), for checking that ranks agree.
uint64_t parameters_hash(const std::vector<Variable>& params);
// Collective: true when every rank's parameters_hash equals rank 0's.
bool parameters_identical_across_ranks(Communicator& comm, const std::vector<Variable>& params);

}  // namespace hdssl::dist
