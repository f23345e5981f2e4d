// Synchronized batch norm: the hook that makes training-mode BatchNorm use statistics of the global batch.
//
// By default BatchNorm normalizes each process's batch with that batch's own statistics (as PyTorch DDP
// does). When a BatchNormStatsReducer is installed (set_batchnorm_stats_reducer, process-wide), every
// training-mode ag::batchnorm() call instead sums its per-channel statistics over all processes through
// the reducer - forward: the value count and sum, then the sum of squared deviations from the global mean
// (two passes, like the CPU kernel); backward: sum(dy) and sum(dy * xhat) - so each process's output
// and input gradient equal those of one process over the union batch (PyTorch's SyncBatchNorm).
// dgamma and dbeta stay this process's own sums: the gradient all-reduce averages them with every other
// parameter gradient. The backward's input gradient is d(sum of the processes' losses)/dx, the same
// convention as the rest of data parallelism (the all-reduce's division by N restores the mean).
//
// Collective: with a reducer installed, every process must run the same BatchNorm calls in the same order.
// Eval mode is unaffected. The fused ag::batchnorm_relu runs as relu(batchnorm(x) [+ r]) in training mode
// while a reducer is installed, so it is synchronized the same way (autograd/functions/norm.cpp).
// The reducer lives in dist/ (dist/sync_batchnorm.h); autograd only calls it.
#pragma once
#include "autograd/variable.h"
#include "engine/backend.h"

namespace hdssl {

class BatchNormStatsReducer {
 public:
  virtual ~BatchNormStatsReducer() = default;
  // t[i] = sum over processes of t[i], in place; t is a small contiguous float tensor on any device.
  virtual void all_reduce_sum(Tensor& t) = 0;
};

// Installs `r` for every later training-mode batch norm (nullptr: per-process statistics again).
void set_batchnorm_stats_reducer(BatchNormStatsReducer* r);
BatchNormStatsReducer* batchnorm_stats_reducer();

namespace ag {
// Training-mode batch norm with statistics summed through `r` (what ag::batchnorm calls when a reducer
// is installed). With a reducer that leaves its tensor unchanged it equals the per-process batch norm.
Variable batchnorm_synced(const Variable& x, const Variable& gamma, const Variable& beta, Tensor& running_mean,
                          Tensor& running_var, const BatchNormArgs& args, BatchNormStatsReducer& r);
}  // namespace ag

}  // namespace hdssl
