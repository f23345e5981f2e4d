// PretrainLoader. The unit of work is one pair (k, b): workers claim pairs in order, so the threads share a
// batch instead of each building a whole one, and each pair writes into its own slice of the batch tensors.
// A seek() bumps a generation number; pairs claimed before it finish into a slot nobody waits for.
#include "data/loader.h"

#include <algorithm>
#include <cstring>

#include "data/sampler.h"

namespace hdssl::data {

namespace {
constexpr uint64_t kStepVolume = 0x7fffffffull;
}

PretrainLoader::PretrainLoader(std::vector<PreprocessedVolume> volumes, PretrainConfig cfg, int threads, int prefetch)
    : volumes_(std::make_shared<const std::vector<PreprocessedVolume>>(std::move(volumes))),
      cfg_(cfg), prefetch_(std::max(1, prefetch)) {
  if (volumes_->empty()) throw DataError("PretrainLoader: no volumes");
  if (cfg_.batch_pairs < 1 || uint64_t(cfg_.batch_pairs) >= kStepVolume || cfg_.voxels_per_pair < 1)
    throw DataError("PretrainLoader: batch_pairs and voxels_per_pair must be >= 1");
  if (cfg_.group < 0 || uint64_t(cfg_.group + 1) * uint64_t(cfg_.batch_pairs) >= kStepVolume)
    throw DataError("PretrainLoader: group (rank) " + std::to_string(cfg_.group) + " out of range");
  for (const auto& v : *volumes_)
    for (int a = 0; a < 3; ++a)
      if (v.image.dims[size_t(a)] < cfg_.patch[size_t(a)])
        throw DataError(v.source + ": preprocessed volume " + std::to_string(v.image.dims[0]) + "x" + std::to_string(v.image.dims[1]) +
                        "x" + std::to_string(v.image.dims[2]) + " is smaller than the patch (preprocess with min_size = patch)");
  for (int t = 0; t < threads; ++t) threads_.emplace_back([this] { worker(); });
}

PretrainLoader::~PretrainLoader() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

PretrainBatch PretrainLoader::make_empty_batch(uint64_t k) const {
  const int64_t B = cfg_.batch_pairs, n = cfg_.voxels_per_pair;
  Shape s{B, 1, cfg_.patch[0], cfg_.patch[1], cfg_.patch[2]};
  PretrainBatch b;
  b.view_a = Tensor::empty(s);
  b.view_b = Tensor::empty(s);
  b.target_a = Tensor::empty(s);
  b.target_b = Tensor::empty(s);
  b.coords_a = Tensor::empty({B, n, 3}, DType::I32);
  b.coords_b = Tensor::empty({B, n, 3}, DType::I32);
  b.volume.assign(size_t(B), 0);
  b.start_a.assign(size_t(B), Dims3{0, 0, 0});
  b.start_b.assign(size_t(B), Dims3{0, 0, 0});
  b.index = k;
  return b;
}

void PretrainLoader::build_pair(uint64_t k, int b, PretrainBatch& batch) const {
  const Rng step = Rng(cfg_.seed, 0x5eed).split(k);
  Rng rng = step.split(uint64_t(cfg_.group) * uint64_t(cfg_.batch_pairs) + uint64_t(b));  // global item
  const auto& vols = *volumes_;
  int vi = int(rng.randint(0, int64_t(vols.size())));  // drawn in both modes, so the rest of the pair's stream is the same
  if (cfg_.volumes == PretrainConfig::Volumes::OneVolume) {
    Rng rv = step.split(kStepVolume + uint64_t(cfg_.group));  // no item reaches it ((group+1) * B < kStepVolume)
    vi = int(rv.randint(0, int64_t(vols.size())));
  }
  PairSample s = sample_pair(vols[size_t(vi)], cfg_.patch, cfg_.voxels_per_pair, rng);
  const int64_t P = cfg_.patch[0] * cfg_.patch[1] * cfg_.patch[2];
  float* ta = batch.target_a.data<float>() + b * P;
  float* tb = batch.target_b.data<float>() + b * P;
  float* va = batch.view_a.data<float>() + b * P;
  float* vb = batch.view_b.data<float>() + b * P;
  extract_patch(vols[size_t(vi)].image, s.start_a, cfg_.patch, ta);
  extract_patch(vols[size_t(vi)].image, s.start_b, cfg_.patch, tb);
  std::memcpy(va, ta, size_t(P) * sizeof(float));
  std::memcpy(vb, tb, size_t(P) * sizeof(float));
  Rng ra = rng.split(101), rb = rng.split(102);
  if (cfg_.aug == PretrainConfig::Aug::Local) {
    augment_local(va, cfg_.patch, cfg_.local, ra);
    augment_local(vb, cfg_.patch, cfg_.local, rb);
  } else if (cfg_.aug == PretrainConfig::Aug::Vox2vec) {
    augment_vox2vec(va, cfg_.patch, cfg_.vox2vec, ra);
    augment_vox2vec(vb, cfg_.patch, cfg_.vox2vec, rb);
  }
  const int64_t n = cfg_.voxels_per_pair;
  int32_t* ca = batch.coords_a.data<int32_t>() + b * n * 3;
  int32_t* cb = batch.coords_b.data<int32_t>() + b * n * 3;
  for (int64_t i = 0; i < n; ++i)
    for (int a = 0; a < 3; ++a) {
      ca[i * 3 + a] = s.coords_a[size_t(i)][size_t(a)];
      cb[i * 3 + a] = s.coords_b[size_t(i)][size_t(a)];
    }
  batch.volume[size_t(b)] = vi;
  batch.start_a[size_t(b)] = s.start_a;
  batch.start_b[size_t(b)] = s.start_b;
}

void PretrainLoader::worker() {
  for (;;) {
    std::shared_ptr<Slot> slot;
    uint64_t k, gen;
    int b;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stop_ || claim_k_ < consume_ + uint64_t(prefetch_); });
      if (stop_) return;
      k = claim_k_;
      b = claim_b_;
      if (++claim_b_ == cfg_.batch_pairs) { claim_b_ = 0; ++claim_k_; }
      auto& s = slots_[k];
      if (!s) s = std::make_shared<Slot>();
      slot = s;
      gen = generation_;
    }
    std::exception_ptr err;
    try {
      {
        std::lock_guard<std::mutex> l(slot->alloc_mu);  // the first pair of a batch allocates its tensors
        if (!slot->allocated) {
          slot->batch = make_empty_batch(k);
          slot->allocated = true;
        }
      }
      build_pair(k, b, slot->batch);
    } catch (...) {
      err = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      if (gen == generation_) {
        if (err && !error_) error_ = err;
        ++slot->done;
      }
    }
    cv_.notify_all();
  }
}

PretrainBatch PretrainLoader::next() {
  if (threads_.empty()) {
    uint64_t k;
    {
      std::lock_guard<std::mutex> l(mu_);
      k = consume_++;
    }
    PretrainBatch batch = make_empty_batch(k);
    for (int b = 0; b < cfg_.batch_pairs; ++b) build_pair(k, b, batch);
    return batch;
  }
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [&] {
    if (error_) return true;
    auto it = slots_.find(consume_);
    return it != slots_.end() && it->second->done == cfg_.batch_pairs;
  });
  if (error_) std::rethrow_exception(error_);  // sticky until seek(): a failed batch is never returned
  auto it = slots_.find(consume_);
  PretrainBatch batch = std::move(it->second->batch);
  slots_.erase(it);
  ++consume_;
  l.unlock();
  cv_.notify_all();
  return batch;
}

size_t PretrainLoader::batches_in_memory() const {
  std::lock_guard<std::mutex> l(mu_);
  return slots_.size();
}

uint64_t PretrainLoader::position() const {
  std::lock_guard<std::mutex> l(mu_);
  return consume_;
}

void PretrainLoader::seek(uint64_t position) {
  {
    std::lock_guard<std::mutex> l(mu_);
    ++generation_;
    slots_.clear();
    consume_ = claim_k_ = position;
    claim_b_ = 0;
    error_ = nullptr;
  }
  cv_.notify_all();
}

}  // namespace hdssl::data
