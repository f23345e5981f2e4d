// The tiny pretraining setup that the cuda, models and dist suites share: a small models::Pretrainer built
// from one seed, random voxel coordinates, and a batch's six inputs drawn in one fixed order. The order of
// the draws is part of each test's inputs (the CUDA tests compare against the CPU, some bit for bit), so
// these helpers draw exactly what the lines they replaced drew.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/random.h"
#include "engine/tensor.h"
#include "models/pretrainer.h"

namespace hdssl::test {

// Base 4, 3 scales, projection width 4, 8-dimensional embeddings; the rest as models::PretrainConfig has it.
inline models::PretrainConfig tiny_pretrain_config() {
  models::PretrainConfig cfg;
  cfg.base = 4;
  cfg.scales = 3;
  cfg.proj_width = 4;
  cfg.embed_dim = 8;
  return cfg;
}

// The tiny Pretrainer in `t`, built from seed 123 on the CPU (the same weights on every device and every
// rank), then moved to `d`, in training mode.
inline std::unique_ptr<models::Pretrainer> tiny_pretrainer(DType t, Device d = Device::cpu()) {
  Rng rng(123);
  auto model =
      std::make_unique<models::Pretrainer>(tiny_pretrain_config(), rng, models::ModuleOptions{t, Device::cpu()});
  model->to(d);
  model->train();
  return model;
}

// `per_item` voxels for each of `items` items, each drawn as x in [0, X), y in [0, Y), z in [0, Z) in that
// order: int32 [items, per_item, 3] on the CPU.
inline Tensor random_voxel_coords(Rng& rng, int64_t items, int64_t per_item, int64_t X, int64_t Y, int64_t Z) {
  std::vector<int32_t> c;
  for (int64_t i = 0; i < items * per_item; ++i) {
    c.push_back(int32_t(rng.randint(0, X)));
    c.push_back(int32_t(rng.randint(0, Y)));
    c.push_back(int32_t(rng.randint(0, Z)));
  }
  return Tensor::from_vector(c, {items, per_item, 3});
}

// A batch's inputs in the order the suites draw them: view_a, view_b, target_a, target_b from `volume()`,
// then coords_a, coords_b from `coords()`.
template <class Volume, class Coords>
models::PretrainInputs draw_pretrain_inputs(Volume&& volume, Coords&& coords) {
  models::PretrainInputs in;
  in.view_a = volume();
  in.view_b = volume();
  in.target_a = volume();
  in.target_b = volume();
  in.coords_a = coords();
  in.coords_b = coords();
  return in;
}

// A batch for the tiny Pretrainer on the CPU: 2 volumes [1, 16, 12, 8] per view and target, uniform in
// [0, 1) and stored in `t`, and `per_item` voxels per item, all drawn from `data`.
inline models::PretrainInputs tiny_pretrain_batch(Rng& data, DType t, int64_t per_item) {
  const Shape vs{2, 1, 16, 12, 8};
  return draw_pretrain_inputs(
      [&] {
        std::vector<double> v(size_t(numel(vs)));
        for (double& x : v) x = data.uniform(0, 1);
        return Tensor::from_vector(v, vs).to(t);
      },
      [&] { return random_voxel_coords(data, 2, per_item, 16, 12, 8); });
}

// Every input of `in` through `f` (a copy to a device, say), in the order above.
template <class F>
models::PretrainInputs map_inputs(const models::PretrainInputs& in, F&& f) {
  return {f(in.view_a), f(in.view_b), f(in.target_a), f(in.target_b), f(in.coords_a), f(in.coords_b)};
}

}  // namespace hdssl::test
