// The Communicator-backed BatchNorm statistics reducer and its scope.
#include "dist/sync_batchnorm.h"

#include "engine/check.h"

namespace hdssl::dist {

void CommBatchNormReducer::all_reduce_sum(Tensor& t) {
  HDSSL_CHECK(t.device() == Device::cpu() && t.is_contiguous() && is_floating(t.dtype()))
      << "sync-bn reducer: expected a contiguous host float tensor, got " << t.describe();
  comm_.allreduce_sum(t.raw(), size_t(t.numel()), t.dtype());
}

SyncBatchNormScope::SyncBatchNormScope(Communicator& comm) : reducer_(comm), previous_(batchnorm_stats_reducer()) {
  set_batchnorm_stats_reducer(&reducer_);
}

SyncBatchNormScope::~SyncBatchNormScope() { set_batchnorm_stats_reducer(previous_); }

}  // namespace hdssl::dist
