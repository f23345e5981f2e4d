// PretrainLoader: prepares batches of augmented overlapping patch pairs on worker threads ahead of the
// training step (docs/method.md sections 3-4).
//
// Determinism: batch k depends only on (seed, k) - pair b of batch k uses Rng(seed).split(k).split(b), and
// the step's volume (Volumes::OneVolume) Rng(seed).split(k).split(kStepVolume) -
// so the same seed gives the same batches whatever the number of threads, and resume = seek(k).
// Memory is bounded: at most `prefetch` batches are being built or waiting at any time.
//
// Usage:
//   std::vector<PreprocessedVolume> vols = load_folder(dir, PreprocessConfig::ct(), cache_dir, &report);
//   PretrainLoader loader(std::move(vols), PretrainConfig{}, /*threads=*/8, /*prefetch=*/2);
//   loader.seek(step);                         // when resuming
//   PretrainBatch b = loader.next();           // batch number loader.position() - 1
#pragma once
#include <array>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "data/augment.h"
#include "data/preprocess.h"
#include "engine/tensor.h"

namespace hdssl::data {

struct PretrainConfig {
  std::array<int64_t, 3> patch{128, 128, 32};  // x, y, z
  int batch_pairs = 10;                        // B
  int voxels_per_pair = 1024;                  // n positive pairs per patch pair
  // Where the B pairs of a step come from. OneVolume (the published program, pretraining_dataset.py
  // __getitem__): one volume drawn per step, all pairs cut from it, so every negative is from the same
  // patient and every batch-norm batch holds one patient. PerPair: a volume drawn for each pair.
  enum class Volumes { OneVolume, PerPair } volumes = Volumes::OneVolume;
  enum class Aug { Local, Vox2vec, None } aug = Aug::Local;  // "ours" / vox2vec / none
  LocalAugConfig local;                        // each augmentation of a set has its own switch
  Vox2vecAugConfig vox2vec;                    // vox2vec.ct = false for MRI (no HU window)
  uint64_t seed = 0;
  // Data-parallel runs (dist/rank_streams.h): this loader builds group `group` (the rank) of a global batch
  // of groups of batch_pairs pairs. Its pair b is global item group * batch_pairs + b, i.e. uses
  // Rng(seed).split(k).split(item), and with OneVolume its volume is drawn from split(kStepVolume + group):
  // one volume per rank and step. Group 0 is exactly a single-process run.
  int group = 0;
};

struct PretrainBatch {
  Tensor view_a, view_b;      // float32 [B,1,X,Y,Z], augmented
  Tensor target_a, target_b;  // float32 [B,1,X,Y,Z], un-augmented (restoration targets)
  // int32 [B,n,3]: patch coordinates (x, y, z) of the positive pairs; coords_a[b,k] and coords_b[b,k] are
  // the same voxel of the volume. If fewer than n body voxels lie in both boxes, all of them are used
  // and the rest drawn again with replacement (see sample_pair).
  Tensor coords_a, coords_b;
  // Provenance, for checks and logs: per pair, the volume index and each box's first voxel.
  std::vector<int> volume;
  std::vector<Dims3> start_a, start_b;
  uint64_t index = 0;         // the batch number k
};

class PretrainLoader {
 public:
  // threads = 0 builds each batch in next() on the calling thread; prefetch >= 1 batches in flight.
  PretrainLoader(std::vector<PreprocessedVolume> volumes, PretrainConfig cfg, int threads = 2, int prefetch = 2);
  ~PretrainLoader();
  PretrainLoader(const PretrainLoader&) = delete;
  PretrainLoader& operator=(const PretrainLoader&) = delete;

  PretrainBatch next();                 // the batch at position(), then position() += 1; rethrows a worker error
  uint64_t position() const;            // number of the next batch
  void seek(uint64_t position);         // the next call to next() returns batch `position`
  const std::vector<PreprocessedVolume>& volumes() const { return *volumes_; }
  size_t batches_in_memory() const;     // built or being built, not yet returned: never more than prefetch
  const PretrainConfig& config() const { return cfg_; }

  // Builds pair b of batch k into `batch` (allocated by make_empty_batch); used by the workers and tests.
  void build_pair(uint64_t k, int b, PretrainBatch& batch) const;
  PretrainBatch make_empty_batch(uint64_t k) const;

 private:
  struct Slot {
    std::mutex alloc_mu;
    bool allocated = false;
    PretrainBatch batch;
    int done = 0;  // pairs finished (guarded by the loader's mutex)
  };
  void worker();

  std::shared_ptr<const std::vector<PreprocessedVolume>> volumes_;
  PretrainConfig cfg_;
  int prefetch_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, std::shared_ptr<Slot>> slots_;
  uint64_t consume_ = 0, claim_k_ = 0, generation_ = 0;
  int claim_b_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
  std::vector<std::thread> threads_;
};

}  // namespace hdssl::data
