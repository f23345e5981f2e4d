// The autocast policy (autograd/autocast.h): the table, what dtype each op class sees and produces under
// BF16 and FP32, the cast's backward, float32 gradients for float32 parameters, and a small network whose
// BF16 gradients stay close to its FP32 ones.
#include <gtest/gtest.h>

#include <cmath>

#include "autograd/autocast.h"
#include "autograd/batchnorm_sync.h"
#include "autograd/functions.h"
#include "autograd/gradcheck.h"
#include "engine/random.h"

using namespace hdssl;

namespace {
Variable leaf(const Shape& s, Rng& rng, DType d = DType::F32, double scale = 1.0) {
  std::vector<double> v(size_t(numel(s)));
  for (double& x : v) x = scale * rng.uniform(-1.0, 1.0);
  return Variable(Tensor::from_vector(v, s).to(d), true);
}
std::vector<double> host(const Tensor& t) { return t.to(DType::F64).to_vector<double>(); }
const DType F32 = DType::F32, F64 = DType::F64, BF16 = DType::BF16, I32 = DType::I32;
}  // namespace

TEST(Autocast, PrecisionParsesAndPrints) {
  EXPECT_EQ(parse_precision("fp32"), Precision::FP32);
  EXPECT_EQ(parse_precision("bf16"), Precision::BF16);
  EXPECT_STREQ(precision_name(Precision::BF16), "bf16");
  EXPECT_STREQ(precision_name(Precision::FP32), "fp32");
  try {
    parse_precision("fp16");
    FAIL() << "fp16 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'fp16': expected fp32 or bf16"), std::string::npos) << e.what();
  }
}

TEST(Autocast, GuardIsScopedAndNests) {
  EXPECT_EQ(current_precision(), Precision::FP32);
  {
    AutocastGuard a(Precision::BF16);
    EXPECT_EQ(current_precision(), Precision::BF16);
    {
      AutocastGuard b(Precision::FP32);
      EXPECT_EQ(current_precision(), Precision::FP32);
    }
    EXPECT_EQ(current_precision(), Precision::BF16);
  }
  EXPECT_EQ(current_precision(), Precision::FP32);
}

// The one table, spelled out.
TEST(Autocast, TheTable) {
  using V = std::vector<DType>;
  const Precision B = Precision::BF16, F = Precision::FP32;
  // Convolutions and GEMMs: float32 -> bf16 under BF16; float64 is never lowered.
  EXPECT_EQ(autocast_dtypes(OpClass::LowPrecision, B, V{F32, F32, F32}), (V{BF16, BF16, BF16}));
  EXPECT_EQ(autocast_dtypes(OpClass::LowPrecision, B, V{BF16, F32}), (V{BF16, BF16}));
  EXPECT_EQ(autocast_dtypes(OpClass::LowPrecision, B, V{F64, F64}), (V{F64, F64}));
  EXPECT_EQ(autocast_dtypes(OpClass::LowPrecision, F, V{F32, F32}), (V{F32, F32}));
  EXPECT_EQ(autocast_dtypes(OpClass::LowPrecision, F, V{BF16, F32}), (V{F32, F32}));  // follow: promote
  // Batch norm: x as it comes, gamma and beta in x's compute dtype, under either precision.
  EXPECT_EQ(autocast_dtypes(OpClass::Normalization, B, V{BF16, F32, F32}), (V{BF16, F32, F32}));
  EXPECT_EQ(autocast_dtypes(OpClass::Normalization, B, V{F32, F32, F32}), (V{F32, F32, F32}));
  EXPECT_EQ(autocast_dtypes(OpClass::Normalization, F, V{BF16, BF16, BF16}), (V{BF16, F32, F32}));
  EXPECT_EQ(autocast_dtypes(OpClass::Normalization, F, V{F64, F64, F64}), (V{F64, F64, F64}));
  // Losses, log-sum-exp, l2-normalisation, sums: bf16 -> float32 under BF16.
  EXPECT_EQ(autocast_dtypes(OpClass::FullPrecision, B, V{BF16, BF16}), (V{F32, F32}));
  EXPECT_EQ(autocast_dtypes(OpClass::FullPrecision, B, V{F64}), (V{F64}));
  EXPECT_EQ(autocast_dtypes(OpClass::FullPrecision, F, V{BF16}), (V{BF16}));
  // Everything else follows its inputs; mixed operands promote to the widest; int32 takes no part.
  EXPECT_EQ(autocast_dtypes(OpClass::Follow, B, V{BF16, BF16}), (V{BF16, BF16}));
  EXPECT_EQ(autocast_dtypes(OpClass::Follow, B, V{BF16, F32}), (V{F32, F32}));
  EXPECT_EQ(autocast_dtypes(OpClass::Follow, F, V{F32, F64, BF16}), (V{F64, F64, F64}));
  EXPECT_EQ(autocast_dtypes(OpClass::Follow, B, V{BF16, I32}), (V{BF16, I32}));
}

// Under BF16, with float32 inputs: what each op class produces.
TEST(Autocast, WhatEachOpProducesUnderBf16) {
  Rng rng(1);
  AutocastGuard bf16(Precision::BF16);
  Variable x = leaf({2, 2, 4, 4, 4}, rng), w = leaf({3, 2, 3, 3, 3}, rng, F32, 0.3), b = leaf({3}, rng);
  Variable y = ag::conv3d(x, w, b, 1);
  EXPECT_EQ(y.dtype(), BF16) << "conv3d";
  Variable g = leaf({3}, rng), be = leaf({3}, rng);
  Tensor rm = Tensor::zeros({3}, F32), rv = Tensor::full({3}, 1.0, F32);
  Variable n = ag::batchnorm(y, g, be, rm, rv, true);
  EXPECT_EQ(n.dtype(), BF16) << "batch norm keeps bf16 activations";
  EXPECT_EQ(ag::batchnorm(x, leaf({2}, rng), leaf({2}, rng), rm = Tensor::zeros({2}, F32),
                          rv = Tensor::full({2}, 1.0, F32), true).dtype(), F32)
      << "batch norm keeps float32 activations";
  Variable r = ag::relu(n);
  EXPECT_EQ(r.dtype(), BF16) << "relu";
  EXPECT_EQ(ag::maxpool2(r).dtype(), BF16) << "maxpool2";
  EXPECT_EQ(ag::upsample2(r).dtype(), BF16) << "upsample2";
  EXPECT_EQ(ag::crop(r, {0, 0, 0}, {2, 2, 2}).dtype(), BF16) << "crop";
  EXPECT_EQ(ag::add(r, r).dtype(), BF16) << "add of bf16";
  EXPECT_EQ(ag::add(r, ag::cast(r, F32)).dtype(), F32) << "add of bf16 and float32 promotes";
  EXPECT_EQ(ag::mul(ag::cast(r, F32), r).dtype(), F32) << "mul promotes";
  EXPECT_EQ(ag::concat_channels({r, ag::cast(r, F32)}).dtype(), F32) << "concat promotes";
  const Tensor coords = Tensor::from_vector(std::vector<int32_t>{0, 1, 2, 3, 3, 3}, {2, 1, 3});
  Variable rows = ag::gather_voxels(r, coords, 0);
  EXPECT_EQ(rows.dtype(), BF16) << "gather_voxels";
  Variable lin = ag::linear(ag::cast(rows, F32), leaf({5, 3}, rng), leaf({5}, rng));
  EXPECT_EQ(lin.dtype(), BF16) << "linear casts a float32 input";
  EXPECT_EQ(ag::matmul(lin, lin, false, true).dtype(), BF16) << "matmul";
  EXPECT_EQ(ag::l2_normalize(lin).dtype(), F32) << "l2_normalize";
  EXPECT_EQ(ag::logsumexp_rows(lin).dtype(), F32) << "logsumexp_rows";
  EXPECT_EQ(ag::infonce(lin, lin, 0.1).dtype(), F32) << "infonce";
  EXPECT_EQ(ag::sum(lin).dtype(), F32) << "sum";
  EXPECT_EQ(ag::mse(y, Tensor::zeros(y.shape(), F32)).dtype(), F32) << "mse against a float32 target";
  EXPECT_EQ(ag::bce_with_logits(y, Tensor::zeros(y.shape(), F32)).dtype(), F32) << "bce";
  EXPECT_EQ(ag::soft_dice(ag::sigmoid(y), Tensor::zeros(y.shape(), F32)).dtype(), F32) << "soft dice";
  // float64 is never lowered.
  Variable x64 = leaf({1, 2, 3, 3, 3}, rng, F64), w64 = leaf({1, 2, 1, 1, 1}, rng, F64);
  EXPECT_EQ(ag::conv3d(x64, w64, Variable(), 0).dtype(), F64);
}

// Under FP32 (the default) with inputs of one dtype nothing is inserted: the op's recorded inputs are the
// caller's own Variables, so the graph (and every value) is what it was before the policy existed.
TEST(Autocast, Fp32InsertsNothing) {
  Rng rng(2);
  Variable x = leaf({1, 2, 3, 3, 3}, rng), w = leaf({2, 2, 1, 1, 1}, rng), b = leaf({2}, rng);
  Variable y = ag::conv3d(x, w, b, 0);
  EXPECT_EQ(y.dtype(), F32);
  ASSERT_TRUE(y.impl()->grad_fn);
  ASSERT_EQ(y.impl()->grad_fn->inputs.size(), 3u);
  EXPECT_EQ(y.impl()->grad_fn->inputs[0].impl(), x.impl());
  EXPECT_EQ(y.impl()->grad_fn->inputs[1].impl(), w.impl());
  EXPECT_EQ(y.impl()->grad_fn->inputs[2].impl(), b.impl());
  Variable l = ag::mse(y, Tensor::zeros(y.shape(), F32));
  EXPECT_EQ(l.impl()->grad_fn->inputs[0].impl(), y.impl());
  EXPECT_EQ(ag::cast(x, F32).impl(), x.impl()) << "a cast to the same dtype is the Variable itself";
}

// The cast's backward converts the gradient back: a bf16 gradient reaching a float32 value arrives as
// float32, exactly widened.
TEST(Autocast, CastBackwardConvertsTheGradientBack) {
  Rng rng(3);
  Variable x = leaf({7}, rng);
  Variable y = ag::cast(x, BF16);
  EXPECT_EQ(y.dtype(), BF16);
  for (size_t i = 0; i < 7; ++i) EXPECT_EQ(host(y.value())[i], double(round_to_bf16(float(host(x.value())[i]))));
  const Tensor seed = Tensor::from_vector(std::vector<double>{0.1, -2, 3.5, 1e-3, 7, -0.25, 1}, {7}).to(BF16);
  y.backward(seed);
  EXPECT_EQ(x.grad().dtype(), F32);
  EXPECT_EQ(host(x.grad()), host(seed));
}

// float64 -> float32 -> float64 is the identity up to float32 rounding; its gradient (the identity) is
// checked by finite differences with a step large enough (1e-3) that the rounding (~6e-8) is 6e-5 of it.
TEST(Autocast, GradcheckOfACastRoundTrip) {
  Rng rng(4);
  Variable x = leaf({6}, rng, F64), w = leaf({6}, rng, F64);
  auto f = [](const std::vector<Variable>& in) {
    return ag::mul(ag::cast(ag::scale(ag::cast(in[0], F32), 3.0), F64), in[1]);
  };
  const GradCheckResult r = gradcheck(f, {x, w}, 1e-3);
  EXPECT_LT(r.max_rel_error, 1e-3) << r.worst;
}

// float64 gradient checks mean the same under BF16: the policy lowers no float64 value.
TEST(Autocast, Float64GradcheckUnderBf16) {
  Rng rng(5);
  Variable x = leaf({2, 2, 3, 3, 3}, rng, F64), w = leaf({2, 2, 3, 3, 3}, rng, F64, 0.3), b = leaf({2}, rng, F64);
  Variable g = leaf({2}, rng, F64), be = leaf({2}, rng, F64), fw = leaf({3, 2}, rng, F64);
  auto f = [&](const std::vector<Variable>& in) {
    Tensor rm = Tensor::zeros({2}, F64), rv = Tensor::full({2}, 1.0, F64);
    Variable h = ag::relu(ag::batchnorm(ag::conv3d(in[0], in[1], in[2], 1), in[3], in[4], rm, rv, true));
    const Tensor coords = Tensor::from_vector(std::vector<int32_t>{0, 1, 2, 2, 0, 1}, {2, 1, 3});
    return ag::l2_normalize(ag::linear(ag::gather_voxels(ag::maxpool2(h), coords, 1), in[5], Variable()));
  };
  AutocastGuard bf16(Precision::BF16);
  const GradCheckResult r = gradcheck(f, {x, w, b, g, be, fw});
  EXPECT_LT(r.max_rel_error, 1e-6) << r.worst;
}

// A small network (conv 3x3x3 -> batch norm -> ReLU -> max-pool -> conv 1x1x1 -> upsample -> + skip conv
// -> MSE) in float32 with float32 parameters, run under FP32 and under BF16. Under BF16 the parameters
// still get float32 gradients (cast per use) and those stay close to the FP32 ones: each rounding to bf16
// is off by at most 2^-9 (0.2%) of its value, a few roundings stack along each path (input, weights,
// activations, gradients), and the gradients are sums over many voxels whose rounding errors partly
// cancel. Seen: at most 1.2% relative L2 per parameter; the bound is 3%. A difference of exactly 0 fails
// too: it would mean that BF16 changed nothing.
TEST(Autocast, Bf16GradientsOfASmallNetworkAreCloseToFp32) {
  Rng rng(6);
  // No bias on the first conv: the batch norm after it would make its gradient zero (rounding noise).
  std::vector<Variable> p = {leaf({4, 1, 3, 3, 3}, rng, F32, 0.5), leaf({4}, rng, F32, 0.2),  // conv, gamma - 1
                             leaf({4}, rng, F32, 0.1), leaf({4, 4, 1, 1, 1}, rng, F32, 0.5),  // beta, conv 1x1x1
                             leaf({4}, rng, F32, 0.1), leaf({4, 4, 1, 1, 1}, rng, F32, 0.5)};  // its bias, skip
  const Tensor x = leaf({2, 1, 6, 6, 4}, rng).value(), target = leaf({2, 4, 6, 6, 4}, rng).value();
  auto grads = [&](Precision prec) {
    for (Variable& v : p) v.zero_grad();
    Tensor rm = Tensor::zeros({4}, F32), rv = Tensor::full({4}, 1.0, F32);
    Variable loss;
    {
      AutocastGuard guard(prec);
      Variable gamma = ag::add(p[1], Variable(Tensor::full({4}, 1.0, F32)));
      Variable h = ag::relu(ag::batchnorm(ag::conv3d(Variable(x), p[0], Variable(), 1), gamma, p[2], rm, rv, true));
      Variable up = ag::upsample2(ag::conv3d(ag::maxpool2(h), p[3], p[4], 0));
      loss = ag::mse(ag::add(up, ag::conv3d(h, p[5], Variable(), 0)), target);
    }
    EXPECT_EQ(loss.dtype(), F32);
    loss.backward();
    std::vector<std::vector<double>> g;
    for (Variable& v : p) {
      EXPECT_EQ(v.grad().dtype(), F32) << "master weights get float32 gradients";
      g.push_back(host(v.grad()));
    }
    return g;
  };
  const auto g32 = grads(Precision::FP32), g16 = grads(Precision::BF16);
  double worst = 0;
  for (size_t k = 0; k < g32.size(); ++k) {
    double d = 0, n = 0;
    for (size_t i = 0; i < g32[k].size(); ++i) d += std::pow(g16[k][i] - g32[k][i], 2), n += std::pow(g32[k][i], 2);
    worst = std::max(worst, std::sqrt(d / n));
    EXPECT_LT(std::sqrt(d / n), 3e-2) << "parameter " << k;
    EXPECT_GT(std::sqrt(d / n), 0.0) << "parameter " << k << ": bf16 changed nothing (was it applied?)";
  }
  std::printf("worst relative L2 difference of a parameter gradient, bf16 vs fp32: %.3g\n", worst);
}

// --sync-bn under bf16: the synchronized batch norm (its sums travel through the host in float64) takes
// bf16 x by widening it: bf16 out, float32 parameter gradients, and the same values as the per-process
// batch norm when there is one process (a reducer that sums over itself alone).
TEST(Autocast, SynchronizedBatchNormTakesBf16) {
  struct OneProcess : BatchNormStatsReducer {
    int calls = 0;
    void all_reduce_sum(Tensor&) override { ++calls; }
  } one;
  Rng rng(7);
  const Variable x(ag::cast(leaf({2, 3, 4, 3, 2}, rng), BF16).value(), true);
  auto run = [&](bool synced, Variable& gamma, Variable& beta) {
    if (synced) set_batchnorm_stats_reducer(&one);
    Tensor rm = Tensor::zeros({3}, F32), rv = Tensor::full({3}, 1.0, F32);
    Variable y, loss;
    {
      AutocastGuard bf16(Precision::BF16);
      y = ag::batchnorm(x, gamma, beta, rm, rv, true);
      loss = ag::mse(y, Tensor::zeros(y.shape(), F32));
    }
    set_batchnorm_stats_reducer(nullptr);
    EXPECT_EQ(y.dtype(), BF16);
    loss.backward();
    EXPECT_EQ(gamma.grad().dtype(), F32);
    return std::make_pair(host(y.value()), host(gamma.grad()));
  };
  Variable g1 = leaf({3}, rng), b1 = leaf({3}, rng);
  Variable g2(g1.value().clone(), true), b2(b1.value().clone(), true);
  const auto plain = run(false, g1, b1), synced = run(true, g2, b2);
  EXPECT_GT(one.calls, 0);
  for (size_t i = 0; i < plain.first.size(); ++i)  // one bf16 rounding apart at most
    EXPECT_NEAR(synced.first[i], plain.first[i], 1e-2 * std::abs(plain.first[i]) + 1e-6) << i;
  for (size_t c = 0; c < 3; ++c)
    EXPECT_NEAR(synced.second[c], plain.second[c], 2e-2 * std::abs(plain.second[c]) + 1e-4) << c;
}

// Eval-mode batch norm (a frozen backbone, inference) on bf16 x: bf16 out and dx, float32 dgamma and dbeta
// summed from dy and x widened, within bf16 rounding of the float32 computation.
TEST(Autocast, EvalBatchNormTakesBf16) {
  Rng rng(8);
  const Variable x32 = leaf({2, 3, 4, 3, 2}, rng);
  const Variable x16(ag::cast(x32, BF16).value(), true), xw(x16.value().to(F32), true);
  Tensor rm = Tensor::from_vector(std::vector<double>{0.1, -0.2, 0.3}, {3}).to(F32);
  Tensor rv = Tensor::from_vector(std::vector<double>{0.5, 1.5, 2.0}, {3}).to(F32);
  auto grads = [&](const Variable& x) {
    Variable g(Tensor::full({3}, 1.2, F32), true), b(Tensor::full({3}, 0.1, F32), true);
    AutocastGuard bf16(Precision::BF16);
    Variable y = ag::batchnorm(x, g, b, rm, rv, false);
    EXPECT_EQ(y.dtype(), x.dtype());
    ag::sum(ag::mul(y, y)).backward();
    EXPECT_EQ(g.grad().dtype(), F32);
    EXPECT_EQ(x.grad().dtype(), x.dtype());
    return std::make_pair(host(g.grad()), host(b.grad()));
  };
  const auto low = grads(x16), ref = grads(xw);  // the same x values, bf16 vs float32 activations
  for (size_t c = 0; c < 3; ++c) {
    EXPECT_NEAR(low.first[c], ref.first[c], 2e-2 * std::abs(ref.first[c])) << c;
    EXPECT_NEAR(low.second[c], ref.second[c], 2e-2 * std::abs(ref.second[c])) << c;
  }
}
