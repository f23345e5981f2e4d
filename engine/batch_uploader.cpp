// The two-slot ring of BatchUploader (which slot a batch goes to, when a slot tensor can be reused, when a
// copy may overlap the step) and the CPU's copier. The device side of the ordering is the copier's.
#include "engine/batch_uploader.h"

#include "engine/backend.h"

namespace hdssl {
namespace {

UploadCopierFactory g_cuda_copier = nullptr;

class CpuUploadCopier final : public UploadCopier {
 public:
  void copy(int, const std::vector<Tensor>& host, const std::vector<Tensor>& dst, bool) override {
    for (size_t i = 0; i < host.size(); ++i) {
      Tensor d = dst[i];
      d.copy_(host[i]);  // CPU to CPU: a memcpy, not counted as a host sync
    }
  }
  void make_ready(int) override {}
  void retire(int) override {}
  void drain() override {}
};

// True when nobody but the uploader holds the tensor's storage (a view or copy of the handle shares it).
bool only_ours(const Tensor& t) { return t.defined() && t.storage().use_count() == 1; }

}  // namespace

std::unique_ptr<UploadCopier> make_cpu_upload_copier() { return std::make_unique<CpuUploadCopier>(); }

void register_upload_copier(DeviceKind kind, UploadCopierFactory factory) {
  HDSSL_CHECK(kind == DeviceKind::CUDA && factory) << "only the CUDA backend registers an upload copier";
  g_cuda_copier = factory;
}

std::unique_ptr<BatchUploader> make_batch_uploader(Device device) {
  if (device.is_cpu()) return std::make_unique<BatchUploader>(device, make_cpu_upload_copier());
  (void)backend(device);  // throws the registry's message for an unavailable device
  HDSSL_CHECK(g_cuda_copier) << "no upload copier registered for " << device.str();
  return std::make_unique<BatchUploader>(device, g_cuda_copier());
}

BatchUploader::BatchUploader(Device device, std::unique_ptr<UploadCopier> copier)
    : device_(device), copier_(std::move(copier)) {
  HDSSL_CHECK(copier_) << "BatchUploader: no copier";
}

BatchUploader::~BatchUploader() {
  // The copy stream may still write the slot tensors of a batch that was put and never taken; they go
  // back to the device allocator below, so wait first.
  copier_->drain();
}

void BatchUploader::put(const std::vector<Tensor>& host) {
  HDSSL_CHECK(!pending_) << "BatchUploader::put: the previous batch was not taken yet (put and take alternate)";
  HDSSL_CHECK(!host.empty()) << "BatchUploader::put: an empty batch";
  for (size_t i = 0; i < host.size(); ++i) {
    const Tensor& t = host[i];
    HDSSL_CHECK(t.defined()) << "BatchUploader::put: tensor " << i << " is undefined";
    HDSSL_CHECK(t.device().is_cpu()) << "BatchUploader::put: tensor " << i << " is " << t.describe()
                                     << ", expected a CPU tensor";
    HDSSL_CHECK(t.is_contiguous()) << "BatchUploader::put: tensor " << i << " (" << t.describe()
                                   << ") is not contiguous";
  }
  Slot& s = slots_[next_];
  // A copy into this slot may overlap the running step only if the slot's previous batch was retired and
  // every tensor is reused as it is (a new tensor may hold memory that queued work still reads).
  bool overlap = s.retired && s.tensors.size() == host.size();
  s.tensors.resize(host.size());
  for (size_t i = 0; i < host.size(); ++i) {
    Tensor& d = s.tensors[i];
    const bool reusable = only_ours(d) && d.shape() == host[i].shape() && d.dtype() == host[i].dtype();
    if (reusable) continue;
    d = Tensor::empty(host[i].shape(), host[i].dtype(), device_);  // a held tensor stays with its holder
    ++stats_.allocations;
    overlap = false;
  }
  if (!overlap) ++stats_.serialized;
  copier_->copy(next_, host, s.tensors, /*after_all_queued_work=*/!overlap);
  s.retired = false;
  pending_ = true;
  ++stats_.batches;
}

std::vector<Tensor> BatchUploader::take() {
  HDSSL_CHECK(pending_) << "BatchUploader::take: nothing was put (put and take alternate)";
  const int slot = next_;
  // The batch taken before this one: if the caller holds none of its tensors any more, no work queued
  // from now on can read it, so the copy that will overwrite it need wait only for the work queued so far.
  if (taken_ >= 0) {
    Slot& prev = slots_[taken_];
    bool free = true;
    for (const Tensor& t : prev.tensors) free = free && only_ours(t);
    if (free) {
      copier_->retire(taken_);
      prev.retired = true;
    }
  }
  copier_->make_ready(slot);
  taken_ = slot;
  next_ = (slot + 1) % UploadCopier::kSlots;
  pending_ = false;
  return slots_[slot].tensors;
}

BatchUploader::Stats BatchUploader::stats() const {
  Stats s = stats_;
  s.host_waits = copier_->host_waits();
  s.staging_bytes = copier_->staging_bytes();
  return s;
}

}  // namespace hdssl
