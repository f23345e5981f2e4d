// safetensors checkpoints: a round trip keeps every value, truncated or corrupted files are refused with
// the file's name and the reason, loading names missing / unexpected / mismatched tensors, a full disk
// keeps the previous checkpoint, and a training checkpoint of another architecture is refused by name.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "models/checkpoint.h"
#include "models/fpn3d.h"
#include "models/train_state.h"
#include "tests/file_size_limit.h"

using namespace hdssl;
using namespace hdssl::models;

namespace {
std::string tmp_path(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("hdssl_ckpt_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

SafeTensors small_state() {
  SafeTensors st;
  st.add("a", Tensor::from_vector<float>({1.5f, -2.f, 3.25f, 0.f, 7.f, 8.f}, {2, 3}));
  st.add("b", Tensor::from_vector<double>({1e-300, -4.0}, {2}));
  st.add("c", Tensor::from_vector<int32_t>({1, 2, 3}, {3, 1}));
  st.metadata["format"] = "test";
  return st;
}

void write_bytes(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}
std::vector<char> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(f), {});
}
std::string error_of(const std::string& path) {
  try {
    read_safetensors(path);
  } catch (const CheckpointError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(Checkpoint, RoundTripKeepsValuesShapesAndMetadata) {
  const std::string p = tmp_path("round.safetensors");
  write_safetensors(p, small_state());
  SafeTensors r = read_safetensors(p);
  ASSERT_EQ(r.tensors.size(), 3u);
  EXPECT_EQ(r.metadata.at("format"), "test");
  EXPECT_EQ(r.find("a")->dtype, "F32");
  EXPECT_EQ(r.find("a")->shape, (Shape{2, 3}));
  EXPECT_EQ(to_tensor(*r.find("a"), DType::F32, Device::cpu()).to_vector<float>(),
            (std::vector<float>{1.5f, -2.f, 3.25f, 0.f, 7.f, 8.f}));
  EXPECT_EQ(to_tensor(*r.find("b"), DType::F64, Device::cpu()).to_vector<double>(), (std::vector<double>{1e-300, -4.0}));
  EXPECT_EQ(to_tensor(*r.find("c"), DType::I32, Device::cpu()).to_vector<int32_t>(), (std::vector<int32_t>{1, 2, 3}));
  // the data starts 8-byte aligned, like the reference writer's files
  auto bytes = read_bytes(p);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
}

TEST(Checkpoint, TruncatedFileIsRefusedByName) {
  const std::string p = tmp_path("trunc.safetensors");
  write_safetensors(p, small_state());
  auto bytes = read_bytes(p);
  for (size_t keep : {size_t(0), size_t(5), size_t(20), bytes.size() - 1}) {
    write_bytes(p, std::vector<char>(bytes.begin(), bytes.begin() + long(keep)));
    std::string e = error_of(p);
    EXPECT_NE(e.find(p), std::string::npos) << "kept " << keep << ": " << e;
    EXPECT_FALSE(e.empty()) << "a file cut to " << keep << " bytes was accepted";
  }
}

TEST(Checkpoint, CorruptedDataOrHeaderIsRefused) {
  const std::string p = tmp_path("corrupt.safetensors");
  write_safetensors(p, small_state());
  auto good = read_bytes(p);
  auto flipped = good;
  flipped[flipped.size() - 3] ^= 0x10;  // one bit in the last tensor's data
  write_bytes(p, flipped);
  EXPECT_NE(error_of(p).find("checksum"), std::string::npos) << error_of(p);
  auto broken = good;
  broken[9] = '#';  // the JSON header
  write_bytes(p, broken);
  EXPECT_NE(error_of(p).find("JSON"), std::string::npos) << error_of(p);
}

TEST(Checkpoint, AtomicWriteReplacesAndLeavesNoTemporaryFile) {
  const std::string p = tmp_path("atomic.safetensors");
  write_safetensors(p, small_state());
  SafeTensors st2;
  st2.add("only", Tensor::from_vector<float>({42.f}, {1}));
  write_safetensors(p, st2);
  EXPECT_EQ(read_safetensors(p).tensors.size(), 1u);
  for (auto& e : std::filesystem::directory_iterator(std::filesystem::path(p).parent_path()))
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << e.path();
}

TEST(Checkpoint, ModuleStateRoundTripAndLoadReport) {
  Rng rng(1);
  FPN3d a({2, 2, 1}, rng), b({2, 2, 1}, rng);
  SafeTensors st;
  add_module_state(st, a, "backbone.");
  // every parameter and buffer, num_batches_tracked as int64 like PyTorch
  EXPECT_EQ(st.find("backbone.left_blocks.0.layers.0.layers.0.num_batches_tracked")->dtype, "I64");
  const std::string p = tmp_path("module.safetensors");
  write_safetensors(p, st);
  SafeTensors r = read_safetensors(p);
  LoadReport rep = load_module_state(b, r, "backbone.");
  EXPECT_TRUE(rep.ok()) << rep.str();
  auto pa = a.named_parameters(), pb = b.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i)
    EXPECT_EQ(pa[i].second.value().to_vector<float>(), pb[i].second.value().to_vector<float>()) << pa[i].first;

  // remove one, add one, reshape one: each is named
  SafeTensors bad = r;
  bad.tensors.erase(bad.tensors.begin());
  bad.add("backbone.extra.weight", Tensor::zeros({1}));
  for (auto& t : bad.tensors)
    if (t.name == "backbone.skip_blocks.0.weight") { t.shape = {2, 2}; t.bytes.resize(16); }
  LoadReport rep2 = load_module_state(b, bad, "backbone.", false);
  ASSERT_EQ(rep2.missing.size(), 1u);
  EXPECT_EQ(rep2.missing[0], "backbone.first_conv.weight");
  ASSERT_EQ(rep2.unexpected.size(), 1u);
  EXPECT_EQ(rep2.unexpected[0], "backbone.extra.weight");
  ASSERT_EQ(rep2.mismatched.size(), 1u);
  EXPECT_NE(rep2.mismatched[0].find("backbone.skip_blocks.0.weight"), std::string::npos);
  EXPECT_THROW(load_module_state(b, bad, "backbone.", true), CheckpointError);
}

TEST(Checkpoint, AFullDiskKeepsThePreviousCheckpoint) {
  const std::string p = tmp_path("full.safetensors");
  write_safetensors(p, small_state());
  const auto good = read_bytes(p);
  SafeTensors big;
  big.add("w", Tensor::zeros({64, 64}));  // 16 KiB of data, over the 4 KiB limit below
  std::string err = hdssl::test::error_with_file_size_limit(4096, [&] { write_safetensors(p, big); });
  EXPECT_NE(err.find(p), std::string::npos) << err;
  EXPECT_NE(err.find("File too large"), std::string::npos) << err;
  EXPECT_EQ(read_bytes(p), good) << "the previous checkpoint must be untouched";
  EXPECT_EQ(read_safetensors(p).tensors.size(), 3u);
  for (auto& e : std::filesystem::directory_iterator(std::filesystem::path(p).parent_path()))
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << "left behind: " << e.path();
}

namespace {
PretrainConfig tiny(int base, int scales) {
  PretrainConfig c;
  c.base = base;
  c.scales = scales;
  c.blocks = 1;
  c.proj_width = 2;
  c.embed_dim = 4;
  return c;
}
// Saves a training checkpoint of `a` and loads it into a model of `b`; returns the error ("" if loaded).
std::string load_across(const PretrainConfig& a, const PretrainConfig& b, const std::string& p) {
  Rng rng(3);
  Pretrainer ma(a, rng), mb(b, rng);
  Adam oa(ma.parameters()), ob(mb.parameters());
  TrainingMeta meta;
  meta.model_json = a.to_json();
  meta.data_json = meta.rng_json = "{}";
  save_training_checkpoint(p, ma, oa, meta);
  try {
    load_training_checkpoint(p, mb, ob);
  } catch (const CheckpointError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(Checkpoint, TrainingCheckpointOfAnotherArchitectureIsRefusedByName) {
  const std::string p = tmp_path("arch.safetensors");
  EXPECT_EQ(load_across(tiny(2, 2), tiny(2, 2), p), "");
  std::string e = load_across(tiny(2, 2), tiny(4, 2), p);
  EXPECT_NE(e.find(p), std::string::npos) << e;
  EXPECT_NE(e.find("another architecture: base_channels 2 (this run: 4)"), std::string::npos) << e;
  PretrainConfig v = tiny(2, 3);
  v.arch = "vox2vec";
  v.balanced = false;
  e = load_across(tiny(2, 2), v, p);
  EXPECT_NE(e.find("arch ours (this run: vox2vec)"), std::string::npos) << e;
  EXPECT_NE(e.find("scales 2 (this run: 3)"), std::string::npos) << e;
  // Same settings in the metadata but tensors of another shape (a hand-edited or foreign file): named too.
  Rng rng(3);
  Pretrainer m2(tiny(2, 2), rng), m4(tiny(4, 2), rng);
  Adam o2(m2.parameters()), o4(m4.parameters());
  TrainingMeta meta;
  meta.model_json = tiny(2, 2).to_json();
  meta.data_json = meta.rng_json = "{}";
  save_training_checkpoint(p, m4, o4, meta);
  try {
    load_training_checkpoint(p, m2, o2);
    ADD_FAILURE() << "tensors of another shape were loaded";
  } catch (const CheckpointError& ex) {
    EXPECT_NE(std::string(ex.what()).find("mismatched: backbone.first_conv.weight"), std::string::npos) << ex.what();
  }
}

TEST(Checkpoint, FuzzRegressionsAreRefusedByName) {
  // Each file the fuzzer (fuzz/fuzz_checkpoint.cpp) found a bug with: now a CheckpointError naming it.
  int n = 0;
  for (const auto& e :
       std::filesystem::directory_iterator(std::string(HDSSL_SOURCE_DIR) + "/fuzz/regressions/fuzz_checkpoint")) {
    const std::string p = e.path().string();
    std::string err = error_of(p);
    EXPECT_NE(err.find(p), std::string::npos) << p << ": " << err;
    ++n;
  }
  EXPECT_GE(n, 2);
}
