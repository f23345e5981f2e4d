// --sync-bn: installs a BatchNormStatsReducer (autograd/batchnorm_sync.h) that sums BatchNorm's
// per-channel statistics over the ranks of a Communicator, so BatchNorm sees the global batch.
//
//   dist::SyncBatchNormScope sync(comm);   // from here on, training-mode BatchNorm is global
//   ... forward, backward ...              // the scope must outlive the backward
//
// Without it (the default, as PyTorch DDP) each rank normalizes with its own batch's statistics. A single
// rank with the scope gives the per-process result.
#pragma once
#include "autograd/batchnorm_sync.h"
#include "dist/communicator.h"

namespace hdssl::dist {

class CommBatchNormReducer : public BatchNormStatsReducer {
 public:
  explicit CommBatchNormReducer(Communicator& comm) : comm_(comm) {}
  void all_reduce_sum(Tensor& t) override;

 private:
  Communicator& comm_;
};

class SyncBatchNormScope {
 public:
  explicit SyncBatchNormScope(Communicator& comm);
  ~SyncBatchNormScope();  // restores the reducer that was installed before
  SyncBatchNormScope(const SyncBatchNormScope&) = delete;
  SyncBatchNormScope& operator=(const SyncBatchNormScope&) = delete;

 private:
  CommBatchNormReducer reducer_;
  BatchNormStatsReducer* previous_;
};

}  // namespace hdssl::dist
