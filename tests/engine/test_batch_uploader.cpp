// BatchUploader (engine/batch_uploader.h) on the CPU: values arrive intact and in order, the two slots
// never overwrite a batch somebody still holds, and the ring tells the copier the right thing (which copies
// may overlap the running step, which must wait for all queued work) - the decisions the CUDA copier
// (cuda/async_upload.h) turns into events, checked here with a copier that records its calls.
#include <gtest/gtest.h>

#include <string>

#include "engine/backend.h"
#include "engine/batch_uploader.h"

using namespace hdssl;

namespace {

// Batch k: three tensors of three dtypes whose values all depend on k.
std::vector<Tensor> batch(int k, int64_t n = 4) {
  std::vector<float> a(size_t(2 * 3 * n));
  std::vector<int32_t> b(size_t(5 * 3));
  std::vector<double> c(7);
  for (size_t i = 0; i < a.size(); ++i) a[i] = float(k) * 1000.f + float(i) + 0.25f;
  for (size_t i = 0; i < b.size(); ++i) b[i] = -k * 100 - int32_t(i);
  for (size_t i = 0; i < c.size(); ++i) c[i] = 1.0 / (double(k) + 1.0) + double(i);
  return {Tensor::from_vector(a, {2, 3, n}), Tensor::from_vector(b, {5, 3}), Tensor::from_vector(c, {7})};
}

// Element-by-element equality of two batches (the host copies below count as host syncs; fine here).
void expect_same(const std::vector<Tensor>& want, const std::vector<Tensor>& got, const std::string& what) {
  ASSERT_EQ(want.size(), got.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(want[i].shape(), got[i].shape()) << what << ", tensor " << i;
    ASSERT_EQ(want[i].dtype(), got[i].dtype()) << what << ", tensor " << i;
    if (want[i].dtype() == DType::F32) EXPECT_EQ(want[i].to_vector<float>(), got[i].to_vector<float>()) << what;
    if (want[i].dtype() == DType::F64) EXPECT_EQ(want[i].to_vector<double>(), got[i].to_vector<double>()) << what;
    if (want[i].dtype() == DType::I32) EXPECT_EQ(want[i].to_vector<int32_t>(), got[i].to_vector<int32_t>()) << what;
  }
}

// Records the ring's calls and copies like the CPU copier.
struct Recorder : UploadCopier {
  std::vector<std::string>* log;
  explicit Recorder(std::vector<std::string>* l) : log(l) {}
  void copy(int slot, const std::vector<Tensor>& host, const std::vector<Tensor>& dst, bool after_all) override {
    log->push_back("copy " + std::to_string(slot) + (after_all ? " after-all" : " overlap"));
    for (size_t i = 0; i < host.size(); ++i) {
      Tensor d = dst[i];
      d.copy_(host[i]);
    }
  }
  void make_ready(int slot) override { log->push_back("ready " + std::to_string(slot)); }
  void retire(int slot) override { log->push_back("retire " + std::to_string(slot)); }
  void drain() override { log->push_back("drain"); }
};

}  // namespace

TEST(BatchUploader, ValuesArriveIntactAndInOrder) {
  auto up = make_batch_uploader(Device::cpu());
  EXPECT_FALSE(up->pending());
  std::vector<Tensor> next = batch(0);
  up->put(next);
  EXPECT_TRUE(up->pending());
  for (int k = 0; k < 6; ++k) {
    // put() has read the host tensors when it returns: the caller may overwrite them at once.
    std::vector<Tensor> sent = {next[0].clone(), next[1].clone(), next[2].clone()};
    next[0].data<float>()[0] = -1.f;
    std::vector<Tensor> got = up->take();
    EXPECT_FALSE(up->pending());
    for (const Tensor& t : got) {
      EXPECT_EQ(t.device(), Device::cpu());
      EXPECT_NE(t.storage(), sent[0].storage());
    }
    expect_same(batch(k), got, "batch " + std::to_string(k));
    next = batch(k + 1);
    up->put(next);  // batch k+1 goes into the other slot while batch k is "in use"
    expect_same(batch(k), got, "batch " + std::to_string(k) + " after the next put");
  }
  // Slot tensors are allocated for the first two batches only, and reused after that.
  EXPECT_EQ(up->stats().batches, 7);
  EXPECT_EQ(up->stats().allocations, 2 * 3);
  EXPECT_EQ(up->stats().serialized, 2);  // the first two copies; every later one may overlap a step
  EXPECT_EQ(up->stats().host_waits, 0);
  EXPECT_EQ(up->stats().staging_bytes, 0u);
}

TEST(BatchUploader, TheTwoSlotsAlternateAndAreReused) {
  auto up = make_batch_uploader(Device::cpu());
  std::vector<const Storage*> seen;
  up->put(batch(0));
  for (int k = 0; k < 5; ++k) {
    std::vector<Tensor> got = up->take();
    seen.push_back(got[0].storage().get());
    up->put(batch(k + 1));
  }
  ASSERT_EQ(seen.size(), 5u);
  EXPECT_NE(seen[0], seen[1]);
  for (size_t k = 2; k < seen.size(); ++k) EXPECT_EQ(seen[k], seen[k - 2]) << "batch " << k << " reuses slot k % 2";
}

// Holding a batch past the batches that would reuse its slot: it is never overwritten; the slot gets new
// tensors and the copy is marked as one that waits for all queued work (the held batch may still be read).
TEST(BatchUploader, ABatchStillHeldIsNeverOverwritten) {
  auto up = make_batch_uploader(Device::cpu());
  up->put(batch(0));
  std::vector<Tensor> held = up->take();  // kept through the whole test
  Tensor view = held[0].reshape({-1});    // a view shares the storage: it counts as holding it
  held.resize(1);
  held[0] = Tensor();
  for (int k = 1; k < 6; ++k) {
    up->put(batch(k));
    std::vector<Tensor> got = up->take();
    expect_same(batch(k), got, "batch " + std::to_string(k));
  }
  EXPECT_EQ(view.to_vector<float>(), batch(0)[0].reshape({-1}).to_vector<float>());
  // Batch 2 reused slot 0 but had to allocate a new first tensor (the view holds the old one); the other
  // tensors of slot 0 and everything after that were reused.
  EXPECT_EQ(up->stats().allocations, 2 * 3 + 1);
  EXPECT_EQ(up->stats().serialized, 3);
}

TEST(BatchUploader, ANewShapeGetsNewSlotTensors) {
  auto up = make_batch_uploader(Device::cpu());
  for (int k = 0; k < 4; ++k) {
    up->put(batch(k, 4));
    expect_same(batch(k, 4), up->take(), "batch " + std::to_string(k));
  }
  EXPECT_EQ(up->stats().allocations, 6);
  up->put(batch(9, 5));  // a different first tensor: that one is allocated again, in slot 0
  expect_same(batch(9, 5), up->take(), "the reshaped batch");
  EXPECT_EQ(up->stats().allocations, 7);
  EXPECT_EQ(up->stats().serialized, 3);
}

// The ring's instructions to the copier in a training loop (take k, put k+1, step k): the first two
// copies wait for all queued work; from batch 2 on, each copy waits only for the work queued before the
// take() that retired its slot's previous batch, i.e. it may overlap the step that runs meanwhile.
TEST(BatchUploader, TellsTheCopierWhichCopiesMayOverlapTheStep) {
  std::vector<std::string> log;
  {
    BatchUploader up(Device::cpu(), std::make_unique<Recorder>(&log));
    up.put(batch(0));
    for (int k = 0; k < 4; ++k) {
      std::vector<Tensor> in = up.take();
      up.put(batch(k + 1));
      expect_same(batch(k), in, "batch " + std::to_string(k));
    }
    log.push_back("end of loop");
  }
  const std::vector<std::string> want{"copy 0 after-all", "ready 0",           "copy 1 after-all",
                                      "retire 0",         "ready 1",           "copy 0 overlap",
                                      "retire 1",         "ready 0",           "copy 1 overlap",
                                      "retire 0",         "ready 1",           "copy 0 overlap",
                                      "end of loop",      "drain"};
  EXPECT_EQ(log, want);
}

// A batch still held when the next one is taken is not retired: the copy into its slot waits for all
// queued work even if the holder lets go before that copy starts.
TEST(BatchUploader, ABatchHeldAtTheNextTakeIsNotRetired) {
  std::vector<std::string> log;
  BatchUploader up(Device::cpu(), std::make_unique<Recorder>(&log));
  up.put(batch(0));
  std::vector<Tensor> first = up.take();
  up.put(batch(1));
  std::vector<Tensor> second = up.take();  // `first` is still held here
  first.clear();
  up.put(batch(2));
  const std::vector<std::string> want{"copy 0 after-all", "ready 0", "copy 1 after-all", "ready 1",
                                      "copy 0 after-all"};
  EXPECT_EQ(log, want);
  EXPECT_EQ(up.stats().allocations, 6);  // slot 0's tensors were free again at the put: reused
}

TEST(BatchUploader, MisuseIsRefusedWithAMessage) {
  auto up = make_batch_uploader(Device::cpu());
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_NE(message([&] { up->take(); }).find("nothing was put"), std::string::npos);
  EXPECT_NE(message([&] { up->put({}); }).find("an empty batch"), std::string::npos);
  EXPECT_NE(message([&] { up->put({Tensor::zeros({2}), Tensor()}); }).find("tensor 1 is undefined"),
            std::string::npos);
  up->put(batch(0));
  EXPECT_NE(message([&] { up->put(batch(1)); }).find("was not taken yet"), std::string::npos);
  expect_same(batch(0), up->take(), "the batch put before the refused put");
  if (!cuda_available()) {
    EXPECT_NE(message([&] { make_batch_uploader(Device::cuda()); }).find("no CUDA device"), std::string::npos);
  }
}

// Through the uploader, a step's reads of its batch count no host sync on the CPU: the copies are
// device-to-device memcpys there (the pretraining step's own count is tested in
// tests/models/test_pretrain_fixture.cpp).
TEST(BatchUploader, PutAndTakeCountNoHostSync) {
  auto up = make_batch_uploader(Device::cpu());
  std::vector<Tensor> b0 = batch(0), b1 = batch(1);
  const uint64_t before = host_sync_count();
  up->put(b0);
  std::vector<Tensor> got = up->take();
  up->put(b1);
  EXPECT_EQ(host_sync_count() - before, 0u);
}
