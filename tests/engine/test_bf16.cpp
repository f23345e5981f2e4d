// bfloat16: the conversion (round to nearest even, NaN and infinity kept) and the dispatch's rule that
// every primitive takes bf16 tensors on every backend, computing in float32 and rounding its outputs
// (engine/bf16_widening.h). Each primitive is run twice on the same values: once on bf16 tensors, once
// on their exact float32 widening; every bf16 output must then hold exactly the float32 result rounded
// to bf16, bit for bit, and every float32 output (batch-norm statistics, in-place running averages) the
// float32 result itself. A primitive whose output the dispatch forgot to round back, or an in-place
// output it did not start from, fails here.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/bf16.h"
#include "engine/random.h"
#include "engine/tensor.h"

using namespace hdssl;

namespace {

uint16_t bits_of(float f) { return bf16(f).bits; }
float from_bits32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace

TEST(Bf16, RoundsToNearestTiesToEven) {
  EXPECT_EQ(bits_of(1.0f), 0x3F80);
  EXPECT_EQ(bits_of(from_bits32(0x3F808000u)), 0x3F80);  // halfway, even below
  EXPECT_EQ(bits_of(from_bits32(0x3F818000u)), 0x3F82);  // halfway, even above
  EXPECT_EQ(bits_of(from_bits32(0x3F808001u)), 0x3F81);  // just above halfway
  EXPECT_EQ(bits_of(from_bits32(0x3F807FFFu)), 0x3F80);  // just below halfway
  EXPECT_EQ(bits_of(-2.0f), 0xC000);
  EXPECT_EQ(bits_of(std::numeric_limits<float>::infinity()), 0x7F80);
  EXPECT_EQ(bits_of(std::numeric_limits<float>::max()), 0x7F80);  // rounds up to infinity, as PyTorch does
  EXPECT_TRUE(std::isnan(float(bf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isnan(float(bf16(from_bits32(0x7F800001u)))));  // a NaN whose payload would round to inf
  EXPECT_EQ(float(bf16(3.140625f)), 3.140625f);                    // representable: exact
  EXPECT_EQ(round_to_bf16(1.0f + 1.0f / 512), 1.0f);
}

TEST(Bf16, TensorConversionsAndRoundTrips) {
  Tensor f = Tensor::from_vector<float>({1.0f, 1.0f + 1.0f / 128, 1.0f + 1.0f / 512, -3.5f}, {4});
  Tensor b = f.to(DType::BF16);
  EXPECT_EQ(b.dtype(), DType::BF16);
  EXPECT_EQ(b.nbytes(), 8u);
  EXPECT_EQ(b.describe(), "bfloat16[4] on cpu");
  EXPECT_EQ(b.to(DType::F32).to_vector<float>(), (std::vector<float>{1.0f, 1.0f + 1.0f / 128, 1.0f, -3.5f}));
  EXPECT_EQ(b.to(DType::F64).to_vector<double>()[1], 1.0 + 1.0 / 128);
  EXPECT_EQ(b.to(DType::I32).to_vector<int32_t>()[3], -3);
  EXPECT_EQ(Tensor::full({1}, 2.5, DType::BF16).item(), 2.5);
  EXPECT_EQ(Tensor::full({2}, 1.0 + 1.0 / 512, DType::BF16).to(DType::F32).to_vector<float>()[1], 1.0f);
  std::vector<bf16> raw = {bf16(0.5f), bf16(-7.0f)};
  EXPECT_EQ(float(Tensor::from_vector<bf16>(raw, {2}).to_vector<bf16>()[1]), -7.0f);
}

namespace {

// One primitive call over a list of tensors (inputs and outputs alike, in the order the case gives); a case
// is a sequence of them (a forward, then its backward on the forward's outputs).
using Call = std::function<void(std::vector<Tensor>&)>;
using Calls = std::vector<Call>;

// kinds: one letter per tensor: 'b' activation (bf16 in the bf16 run), 'f' float32 in both runs (batch-norm
// parameters and statistics, Adam state), 'i' int32 (indices, coordinates).
void expect_widened_and_rounded(const std::string& name, std::vector<Tensor> values, const std::string& kinds,
                                const Calls& calls) {
  ASSERT_EQ(values.size(), kinds.size()) << name;
  std::vector<Tensor> in_bf16, in_f32;
  for (size_t i = 0; i < values.size(); ++i) {
    Tensor v = values[i];
    if (kinds[i] == 'b') {
      Tensor b = v.to(DType::BF16);
      in_bf16.push_back(b);
      in_f32.push_back(b.to(DType::F32));  // exact
    } else {
      in_bf16.push_back(v.clone());
      in_f32.push_back(v.clone());
    }
  }
  // The float32 run stores what the bf16 run stores: each activation rounded to bf16 after every call.
  for (const Call& call : calls) {
    call(in_bf16);
    call(in_f32);
    for (size_t i = 0; i < values.size(); ++i)
      if (kinds[i] == 'b') in_f32[i] = in_f32[i].to(DType::BF16).to(DType::F32);
  }
  for (size_t i = 0; i < values.size(); ++i) {
    SCOPED_TRACE(name + ", tensor " + std::to_string(i));
    if (kinds[i] == 'b') {
      ASSERT_EQ(in_bf16[i].dtype(), DType::BF16);
      const std::vector<bf16> got = in_bf16[i].to_vector<bf16>();
      const std::vector<bf16> want = in_f32[i].to(DType::BF16).to_vector<bf16>();
      for (size_t k = 0; k < got.size(); ++k) ASSERT_EQ(got[k].bits, want[k].bits) << "element " << k;
    } else if (kinds[i] == 'f') {
      EXPECT_EQ(in_bf16[i].to_vector<float>(), in_f32[i].to_vector<float>());
    } else {
      EXPECT_EQ(in_bf16[i].to_vector<int32_t>(), in_f32[i].to_vector<int32_t>());
    }
  }
}

Tensor randn(const Shape& s, uint64_t seed, double scale = 1.0) {
  Rng rng(seed);
  std::vector<float> v(size_t(numel(s)));
  for (float& x : v) x = float(scale * rng.normal());
  return Tensor::from_vector(v, s);
}
Tensor uniform01(const Shape& s, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(size_t(numel(s)));
  for (float& x : v) x = float(rng.uniform());
  return Tensor::from_vector(v, s);
}

}  // namespace

TEST(Bf16, EveryPrimitiveComputesInFloat32AndRounds) {
  Backend& be = backend(Device::cpu());
  const Shape vol{2, 3, 4, 4, 2}, small{2, 3, 2, 2, 1}, rows{6, 5};
  auto z = [](const Shape& s) { return Tensor::zeros(s); };
  auto Z = [](const Shape& s, DType t) { return Tensor::zeros(s, t); };

  expect_widened_and_rounded("axpby", {randn(vol, 1), randn(vol, 2), z(vol)}, "bbb",
                             {[&](auto& t) { be.axpby(0.3, t[0], -1.7, t[1], t[2]); }});
  expect_widened_and_rounded("mul", {randn(vol, 1), randn(vol, 2), z(vol)}, "bbb",
                             {[&](auto& t) { be.mul(t[0], t[1], t[2]); }});
  expect_widened_and_rounded(
      "relu", {randn(vol, 3), z(vol), randn(vol, 4), z(vol)}, "bbbb",
      {[&](auto& t) { be.relu_forward(t[0], t[1]); }, [&](auto& t) { be.relu_backward(t[1], t[2], t[3]); }});
  expect_widened_and_rounded(
      "sigmoid", {randn(vol, 3), z(vol), randn(vol, 4), z(vol)}, "bbbb",
      {[&](auto& t) { be.sigmoid_forward(t[0], t[1]); }, [&](auto& t) { be.sigmoid_backward(t[1], t[2], t[3]); }});
  expect_widened_and_rounded(
      "sums", {randn(vol, 5), z({1}), Tensor::full({1}, 2.0), z({3})}, "bbbb",
      {[&](auto& t) { be.sum_all(t[0], t[1]); }, [&](auto& t) { be.sum_squares(t[0], t[2]); },  // "+=": starts from 2
       [&](auto& t) { be.channel_sum(t[0], t[3]); }});
  const Shape w3{4, 3, 3, 3, 3}, yv{2, 4, 4, 4, 2};
  expect_widened_and_rounded(
      "conv3d", {randn(vol, 6), randn(w3, 7, 0.2), randn({4}, 8), z(yv), randn(yv, 9), z(vol), z(w3)}, "bbbbbbb",
      {[&](auto& t) { be.conv3d_forward(t[0], t[1], t[2], t[3], {1}); },
       [&](auto& t) { be.conv3d_backward_data(t[4], t[1], t[5], {1}); },
       [&](auto& t) { be.conv3d_backward_filter(t[0], t[4], t[6], {1}); }});
  expect_widened_and_rounded(
      "pool", {randn(vol, 10), z(small), Z(small, DType::I32), randn(small, 11), z(vol), z(vol)}, "bbibbb",
      {[&](auto& t) { be.maxpool2_forward(t[0], t[1], t[2]); },
       [&](auto& t) { be.maxpool2_backward(t[3], t[2], t[4]); }, [&](auto& t) { be.upsample2_backward(t[0], t[3]); },
       [&](auto& t) { be.upsample2_forward(t[3], t[5]); }});
  const int64_t off[3] = {1, 1, 0};
  expect_widened_and_rounded(
      "crop", {randn(vol, 12), z(small), z(vol)}, "bbb",
      {[&](auto& t) { be.crop_forward(t[0], t[1], off); }, [&](auto& t) { be.crop_backward(t[1], t[2], off); }});
  // Batch norm: bf16 activations, float32 parameters and statistics (running ones updated in place).
  expect_widened_and_rounded(
      "batchnorm",
      {randn(vol, 13, 3.0), randn({3}, 14), randn({3}, 15), z(vol), z({3}), z({3}), randn({3}, 16),
       Tensor::full({3}, 1.5), randn(vol, 17), z(vol), z({3}), z({3}), z(vol)},
      "bffbffffbbffb",
      {[&](auto& t) { be.batchnorm_forward_train(t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], {}); },
       [&](auto& t) { be.batchnorm_backward(t[0], t[8], t[1], t[4], t[5], t[9], t[10], t[11]); },
       [&](auto& t) { be.batchnorm_forward_eval(t[0], t[1], t[2], t[6], t[7], t[12], {}); }});
  // The fused batch norm + ReLU + residual: x, gamma, beta, r, y, mean, invstd, rm, rv, dy, dx, dgamma, dbeta, dr,
  // eval y.
  expect_widened_and_rounded(
      "batchnorm_relu",
      {randn(vol, 37, 3.0), randn({3}, 38), randn({3}, 39), randn(vol, 40), z(vol), z({3}), z({3}), randn({3}, 41),
       Tensor::full({3}, 1.5), randn(vol, 42), z(vol), z({3}), z({3}), z(vol), z(vol)},
      "bffbbffffbbffbb",
      {[&](auto& t) { be.batchnorm_relu_forward_train(t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], {}); },
       [&](auto& t) { be.batchnorm_relu_backward(t[0], t[4], t[9], t[1], t[5], t[6], t[10], t[11], t[12], t[13]); },
       [&](auto& t) { be.batchnorm_relu_forward_eval(t[0], t[1], t[2], t[3], t[7], t[8], t[14], {}); }});
  expect_widened_and_rounded(
      "matmul", {randn({6, 5}, 18), randn({4, 5}, 19), randn({6, 4}, 20), randn({4}, 21), z({6, 4})}, "bbbbb",
      {// beta != 0: matmul reads its output first
       [&](auto& t) { be.matmul(t[0], t[1], t[2], false, true, 0.5, 0.25); },
       [&](auto& t) { be.add_row_vector(t[2], t[3], t[4]); }});
  Tensor coords = Tensor::from_vector<int32_t>({0, 1, 1, 3, 2, 0, 3, 3, 1, 1, 0, 0}, {2, 2, 3});
  expect_widened_and_rounded("gather", {randn(vol, 22), coords, z({4, 3}), randn({4, 3}, 23), z(vol)}, "bibbb",
                             {[&](auto& t) { be.gather_voxels(t[0], t[1], 0, t[2]); },
                              [&](auto& t) { be.gather_voxels_backward(t[3], t[1], 0, t[4]); }});
  expect_widened_and_rounded(
      "rowwise", {randn(rows, 24), z(rows), z({6}), randn(rows, 25), z(rows), z({6}), randn({6}, 26), z(rows)},
      "bbbbbbbb",
      {[&](auto& t) { be.l2norm_forward(t[0], t[1], t[2], 1e-6); },
       [&](auto& t) { be.l2norm_backward(t[3], t[1], t[2], t[4]); }, [&](auto& t) { be.logsumexp_rows(t[0], t[5]); },
       [&](auto& t) { be.logsumexp_rows_backward(t[0], t[5], t[6], t[7]); }});
  expect_widened_and_rounded(
      "infonce", {randn(rows, 27), randn(rows, 28), z({1}), z({6}), z({6}), Tensor::full({1}, 1.0), z(rows), z(rows)},
      "bbbbbbbb",
      {[&](auto& t) { be.infonce_forward(t[0], t[1], 0.1, t[2], t[3], t[4]); },
       [&](auto& t) { be.infonce_backward(t[0], t[1], 0.1, t[3], t[4], t[5], t[6], t[7]); }});
  expect_widened_and_rounded(
      "mse_bce", {randn(vol, 29), uniform01(vol, 30), z({1}), Tensor::full({1}, 0.5), z(vol), z({1}), z(vol)},
      "bbbbbbb",
      {[&](auto& t) { be.mse_forward(t[0], t[1], t[2]); }, [&](auto& t) { be.mse_backward(t[0], t[1], t[3], t[4]); },
       [&](auto& t) { be.bce_logits_forward(t[0], t[1], t[5]); },
       [&](auto& t) { be.bce_logits_backward(t[0], t[1], t[3], t[6]); }});
  expect_widened_and_rounded(
      "dice", {uniform01(vol, 31), uniform01(vol, 32), z({1}), z({6, 3}), Tensor::full({1}, 1.0), z(vol)}, "bbbbbb",
      {[&](auto& t) { be.soft_dice_forward(t[0], t[1], t[2], t[3]); },
       [&](auto& t) { be.soft_dice_backward(t[0], t[1], t[3], t[4], t[5]); }});
  expect_widened_and_rounded(
      "optimizer",
      {randn({7}, 33), randn({7}, 34), randn({7}, 35, 0.1), uniform01({7}, 36), Tensor::full({1}, 30.0), z({1})},
      "bbbbbb",
      {[&](auto& t) { be.clip_scale(t[4], 2.0, 1e-6, t[5]); },
       [&](auto& t) { be.adam_step(t[0], t[1], t[2], t[3], AdamArgs{}, 1.0, t[5]); }});
}

TEST(Bf16, BatchNormStatisticsMustBeFloat32ForBf16Activations) {
  Backend& be = backend(Device::cpu());
  Tensor x = randn({2, 3, 2, 2, 2}, 1).to(DType::BF16), y = Tensor::zeros_like(x);
  Tensor g = Tensor::full({3}, 1.0), b = Tensor::zeros({3}), m = Tensor::zeros({3}), s = Tensor::zeros({3});
  Tensor rm = Tensor::zeros({3}), rv = Tensor::full({3}, 1.0);
  Tensor g16 = g.to(DType::BF16);
  try {
    be.batchnorm_forward_train(x, g16, b, y, m, s, rm, rv, {});
    FAIL() << "bf16 gamma accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("gamma must be float32[3]"), std::string::npos) << e.what();
  }
  Tensor y32 = Tensor::zeros({2, 3, 2, 2, 2});
  EXPECT_THROW(be.relu_forward(x, y32), Error);  // the output's dtype must match
  EXPECT_NO_THROW(be.batchnorm_forward_train(x, g, b, y, m, s, rm, rv, {}));
}
