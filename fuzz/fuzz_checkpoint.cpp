// libFuzzer harness for the safetensors reader (models/checkpoint.cpp) and the training-checkpoint
// loader on top of it (models/train_state.cpp): the input is the whole .safetensors file. Files that
// parse are loaded into a tiny fixed Pretrainer (base 2, 2 scales, 1 block) and its Adam, as
// `./pretrain --resume` does, and their model config is parsed as resume would.
#include "autograd/optim.h"
#include "fuzz/fuzz_util.h"
#include "models/train_state.h"

using namespace hdssl;
using namespace hdssl::models;

namespace {
PretrainConfig tiny_config() {
  PretrainConfig c;
  c.base = 2;
  c.scales = 2;
  c.blocks = 1;
  c.proj_width = 2;
  c.embed_dim = 4;
  return c;
}
Pretrainer& model() {
  static Rng rng(1);
  static Pretrainer m(tiny_config(), rng);
  return m;
}
Adam& adam() {
  static Adam a(model().parameters());
  return a;
}
}  // namespace

// HDSSL_FUZZ_MAKE_SEED=PATH: write the tiny model's training checkpoint to PATH (the corpus seed) and exit.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* seed = std::getenv("HDSSL_FUZZ_MAKE_SEED")) {
    TrainingMeta meta;
    meta.step = 3;
    meta.sampler_position = 3;
    meta.model_json = tiny_config().to_json();
    meta.data_json = "{}";
    meta.rng_json = "{}";
    save_training_checkpoint(seed, model(), adam(), meta);
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::scratch() + "/c.safetensors";
  fuzz::write_file(path, data, size);
  fuzz::expect_clean("c.safetensors", [&] {
    SafeTensors st = read_safetensors(path);
    for (const auto& t : st.tensors) (void)to_tensor(t, DType::F64, Device::cpu());
  });
  fuzz::expect_clean("c.safetensors", [&] {
    TrainingMeta meta = load_training_checkpoint(path, model(), adam());
    try {
      (void)PretrainConfig::from_json(meta.model_json);
    } catch (const Error& e) {
      throw Error(path + ": model: " + e.what());
    }
  });
  return 0;
}
