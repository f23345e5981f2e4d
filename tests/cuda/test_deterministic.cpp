// Deterministic mode (engine/backend.h: set_deterministic, ./pretrain --deterministic): the same inputs
// give the same bits, run after run. The voxel-gather backward then adds each feature plane's rows in row
// order on one thread, the CPU's loop, so it equals the CPU bit for bit even where many sampled voxels
// share a feature voxel (a coarse level); and two whole pretraining runs (3 steps of models::PretrainStep
// on a small model, deterministic cuDNN algorithms) end with bit-identical parameters and Adam moments.
// With HDSSL_PARITY_SELFTEST=1 the CPU stands in for CUDA (which is deterministic anyway): that checks the
// tests themselves; the GPU run is the real check.
#include <memory>

#include "models/pretrain_step.h"
#include "tests/cuda/parity.h"
#include "tests/tiny_pretraining.h"

namespace hdssl::test {
namespace {

struct DeterministicMode {  // on for one test, off again after it whatever happens
  DeterministicMode() { set_deterministic(true); }
  ~DeterministicMode() { set_deterministic(false); }
};

TEST(CudaDeterministic, GatherBackwardEqualsTheCpuBitForBit) {
  HDSSL_REQUIRE_CUDA();
  DeterministicMode mode;
  Rng rng(31);
  for (DType t : kFloatTypes) {
    // Level 2 of a 12x8x8 patch: a 3x2x2 volume, 400 voxels per item, so each feature voxel takes ~33 adds.
    const int64_t B = 2, n = 400, C = 5;
    std::vector<int32_t> c;
    for (int64_t i = 0; i < B * n; ++i) {
      c.push_back(int32_t(rng.randint(0, 12)));
      c.push_back(int32_t(rng.randint(0, 8)));
      c.push_back(int32_t(rng.randint(0, 8)));
    }
    const Tensor coords = Tensor::from_vector(c, {B, n, 3}), dout = random({B * n, C}, t, rng);
    auto run = [&](Device d) {
      Tensor dfeat = output({B, C, 3, 2, 2}, t, d);
      backend(d).gather_voxels_backward(on(d, dout), on(d, coords), 2, dfeat);
      return dfeat;
    };
    expect_parity([&](Device d) { return std::vector<Tensor>{run(d)}; }, {Tol{0, 0}},
                  std::string("ordered gather backward ") + dtype_name(t));
    EXPECT_TRUE(close(run(gpu()), run(gpu()), Tol{0, 0})) << "two runs on the GPU differ, " << dtype_name(t);
  }
}

// Three steps of a small pretraining run; returns every parameter and Adam moment, in order.
std::vector<Tensor> three_steps(Device d) {
  const std::unique_ptr<models::Pretrainer> owned = tiny_pretrainer(DType::F32, d);
  models::Pretrainer& model = *owned;
  Rng data(7);
  // 64 voxels per item: level 2 (4x3x2) repeats voxels often.
  const models::PretrainInputs in =
      map_inputs(tiny_pretrain_batch(data, DType::F32, 64), [&](const Tensor& x) { return on(d, x); });
  models::StepSettings s;
  s.log_every = 3;
  models::PretrainStep step(model, s);
  for (int64_t k = 1; k <= 3; ++k) step.run(in, k);
  std::vector<Tensor> out;
  for (auto& [name, v] : model.named_parameters()) out.push_back(v.value().clone());
  for (const Tensor& m : step.optimizer().exp_avg_sq()) out.push_back(m.clone());
  return out;
}

TEST(CudaDeterministic, TwoPretrainingRunsAreBitwiseEqual) {
  HDSSL_REQUIRE_CUDA();
  DeterministicMode mode;
  const std::vector<Tensor> a = three_steps(gpu()), b = three_steps(gpu());
  ASSERT_EQ(a.size(), b.size());
  for (size_t k = 0; k < a.size(); ++k) EXPECT_TRUE(close(a[k], b[k], Tol{0, 0})) << "tensor " << k;
}

}  // namespace
}  // namespace hdssl::test
