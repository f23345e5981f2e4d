// The asynchronous batch upload (engine/batch_uploader.h with cuda/async_upload.h's copier: pinned staging,
// a copy stream, events): values arrive intact and in order even when the compute stream reads batch k
// while the copy of batch k+1 is in flight; a batch the caller still holds is never overwritten; and a
// pretraining loop fed through the uploader counts no host sync per step (engine/backend.h:
// host_sync_count(); waits inside cuDNN's algorithm search at the first step are not visible to it) and
// ends with the same bits as the same loop fed with Tensor::to(device) (deterministic mode).
// With HDSSL_PARITY_SELFTEST=1 the CPU uploader stands in (checks the tests themselves).
#include <memory>

#include "engine/batch_uploader.h"
#include "models/pretrain_step.h"
#include "models/upload_inputs.h"
#include "tests/cuda/parity.h"
#include "tests/tiny_pretraining.h"

namespace hdssl::test {
namespace {

// Batch k: large enough (4 M floats = 16 MiB in the first tensor) that a copy takes a while.
std::vector<Tensor> big_batch(int k) {
  Rng rng(uint64_t(1000 + k));
  return {random({4, 1, 128, 128, 64}, DType::F32, rng), random({3, 7, 5}, DType::F64, rng),
          random_int({2, 513, 3}, rng, -k - 5, k + 5)};
}

void expect_equal_batch(const std::vector<Tensor>& want, const std::vector<Tensor>& got, const std::string& what) {
  ASSERT_EQ(want.size(), got.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) EXPECT_TRUE(close(want[i], got[i], Tol{0, 0})) << what << ", tensor " << i;
}

// The loop of ./pretrain: take batch k, put batch k+1, then queue work that reads batch k (a device copy,
// as a step's first kernels would). Every copy is compared after the loop, so nothing waits inside it.
TEST(CudaAsyncUpload, ValuesArriveIntactAndInOrderWhileTheNextCopyRuns) {
  HDSSL_REQUIRE_CUDA();
  auto up = make_batch_uploader(gpu());
  std::vector<std::vector<Tensor>> host, read;
  for (int k = 0; k < 7; ++k) host.push_back(big_batch(k));
  const uint64_t syncs_before = host_sync_count();
  up->put(host[0]);
  for (int k = 0; k < 7; ++k) {
    std::vector<Tensor> b = up->take();
    if (k + 1 < 7) up->put(host[size_t(k) + 1]);
    std::vector<Tensor> copy;
    for (const Tensor& t : b) {
      EXPECT_EQ(t.device(), gpu());
      copy.push_back(t.clone());  // queued on the compute stream after the next batch's copy started
    }
    read.push_back(copy);
  }
  EXPECT_EQ(host_sync_count() - syncs_before, 0u) << "the upload loop waited for the device";
  for (int k = 0; k < 7; ++k) expect_equal_batch(host[size_t(k)], read[size_t(k)], "batch " + std::to_string(k));
  const BatchUploader::Stats s = up->stats();
  EXPECT_EQ(s.batches, 7);
  EXPECT_EQ(s.allocations, 2 * 3);
  EXPECT_EQ(s.serialized, 2);
  if (!selftest()) EXPECT_GE(s.staging_bytes, 2 * host[0][0].nbytes());  // two pinned staging buffers
  std::printf("7 batches of %.1f MiB: host waits for a staging buffer %lld, pinned %.1f MiB\n",
              double(host[0][0].nbytes() + host[0][1].nbytes() + host[0][2].nbytes()) / (1 << 20),
              (long long)s.host_waits, double(s.staging_bytes) / (1 << 20));
}

// A batch kept past the puts that reuse its slot keeps its values (the slot gets a new tensor, whose copy
// waits for all queued work).
TEST(CudaAsyncUpload, AHeldBatchIsNeverOverwritten) {
  HDSSL_REQUIRE_CUDA();
  auto up = make_batch_uploader(gpu());
  up->put(big_batch(0));
  const std::vector<Tensor> held = up->take();
  for (int k = 1; k < 5; ++k) {
    up->put(big_batch(k));
    expect_equal_batch(big_batch(k), up->take(), "batch " + std::to_string(k));
  }
  expect_equal_batch(big_batch(0), held, "the held batch 0");
  EXPECT_EQ(up->stats().allocations, 2 * 3 + 3);  // slot 0 got three new tensors at batch 2
}

struct DeterministicMode {  // on for one test, off again after it whatever happens
  DeterministicMode() { set_deterministic(true); }
  ~DeterministicMode() { set_deterministic(false); }
};

// Host batches of the small pretraining model below (CPU tensors, as the loader makes them).
std::vector<models::PretrainInputs> host_batches(int count) {
  Rng data(7);
  std::vector<models::PretrainInputs> out;
  for (int k = 0; k < count; ++k) out.push_back(tiny_pretrain_batch(data, DType::F32, 64));
  return out;
}

// Five steps of a small pretraining run on the given batches, fed through the uploader (the loop of
// ./pretrain) or by Tensor::to(device). Returns every parameter and Adam moment; `syncs` gets the host
// syncs counted in each step of the uploader loop (take + put + step).
std::vector<Tensor> five_steps(Device d, const std::vector<models::PretrainInputs>& batches, bool uploader,
                               std::vector<uint64_t>* syncs) {
  const std::unique_ptr<models::Pretrainer> owned = tiny_pretrainer(DType::F32, d);
  models::Pretrainer& model = *owned;
  models::StepSettings s;
  s.log_every = 1000;  // no step of the loop is a log step
  models::PretrainStep step(model, s);
  const int64_t steps = 5;
  auto up = make_batch_uploader(d);
  if (uploader) up->put(models::input_tensors(batches[0]));
  for (int64_t k = 1; k <= steps; ++k) {
    const models::PretrainInputs& h = batches[size_t(k - 1) % batches.size()];
    const uint64_t before = host_sync_count();
    models::PretrainInputs in;
    if (uploader) {
      in = models::inputs_from_tensors(up->take());
      if (k < steps) up->put(models::input_tensors(batches[size_t(k) % batches.size()]));
    } else {
      in = map_inputs(h, [&](const Tensor& x) { return x.to(d); });
    }
    step.run(in, k);
    if (syncs) syncs->push_back(host_sync_count() - before);
  }
  std::vector<Tensor> out;
  for (auto& [name, v] : model.named_parameters()) out.push_back(v.value().clone());
  for (const Tensor& m : step.optimizer().exp_avg_sq()) out.push_back(m.clone());
  if (uploader) EXPECT_EQ(up->stats().serialized, 2) << "every copy after the first two overlaps a step";
  return out;
}

TEST(CudaAsyncUpload, PretrainLoopThroughTheUploaderHasNoHostSyncAndTheSameBits) {
  HDSSL_REQUIRE_CUDA();
  DeterministicMode mode;
  const std::vector<models::PretrainInputs> batches = host_batches(3);
  std::vector<uint64_t> syncs;
  const std::vector<Tensor> a = five_steps(gpu(), batches, /*uploader=*/true, &syncs);
  const std::vector<Tensor> b = five_steps(gpu(), batches, /*uploader=*/false, nullptr);
  ASSERT_EQ(syncs.size(), 5u);
  for (size_t k = 0; k < syncs.size(); ++k) EXPECT_EQ(syncs[k], 0u) << "host syncs in step " << k + 1;
  ASSERT_EQ(a.size(), b.size());
  for (size_t k = 0; k < a.size(); ++k) EXPECT_TRUE(close(b[k], a[k], Tol{0, 0})) << "tensor " << k;
}

}  // namespace
}  // namespace hdssl::test
