// The fused batch norm + ReLU (+ residual), ag::batchnorm_relu, against the composition it replaces in the
// models, relu(batchnorm(x) [+ r]), on the CPU backend: the output, every gradient (dx, dgamma, dbeta, dr)
// and the updated running statistics are BITWISE equal, in float32 and float64, training and eval, on 5D
// volumes and 2D rows. Bitwise rather than to a tolerance because nothing is allowed to differ: both paths
// run the same statistics code (engine/cpu/norm.cpp), round the normalized value to the dtype before r is
// added in the dtype (axpby's arithmetic) and before the ReLU, and mask dy with y > 0 before the same
// reductions in the same order. So swapping the fused op into the models leaves their numbers (and the
// PyTorch step fixtures' tolerances) untouched, and any difference is a bug.
// Also: the primitive's optional dr changes nothing else; a NaN propagates as in relu_forward; bf16
// activations under the BF16 autocast; a residual of another dtype runs the composition; under --sync-bn
// (a BatchNormStatsReducer installed) training mode goes through the reducer, as batchnorm does.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "autograd/autocast.h"
#include "autograd/batchnorm_sync.h"
#include "autograd/functions.h"
#include "autograd/gradcheck.h"
#include "engine/random.h"

using namespace hdssl;

namespace {

Tensor random_tensor(const Shape& shape, DType t, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  Rng rng(seed);
  std::vector<double> v(size_t(numel(shape)));
  for (double& x : v) x = rng.uniform(lo, hi);
  return Tensor::from_vector(v, shape).to(t);
}

// Every result of one forward + backward, as raw bytes (bitwise comparison, NaN included).
struct Results {
  std::vector<std::string> names;
  std::vector<std::vector<unsigned char>> bytes;
  void add(const std::string& name, const Tensor& t) {
    ASSERT_TRUE(t.defined()) << name << " is undefined";
    std::vector<unsigned char> b(t.nbytes());
    std::memcpy(b.data(), t.raw(), t.nbytes());
    names.push_back(name);
    bytes.push_back(std::move(b));
  }
};

struct Case {
  Shape shape;
  DType dtype;
  bool training, residual;
  std::string str() const {
    std::string s = std::string(dtype_name(dtype)) + (training ? " train" : " eval") + (residual ? " +r" : "") + " [";
    for (int64_t d : shape) s += std::to_string(d) + ",";
    return s + "]";
  }
};

// One forward and backward with a random output gradient, fused or composed. Inputs from fixed seeds, so
// both runs see the same numbers; the running statistics start equal and are compared after the forward.
Results run(const Case& c, bool fused) {
  const int64_t C = c.shape[1];
  Variable x(random_tensor(c.shape, c.dtype, 1, -2.0, 3.0), true);
  Variable gamma(random_tensor({C}, c.dtype, 2, 0.5, 1.5), true), beta(random_tensor({C}, c.dtype, 3), true);
  Variable r(random_tensor(c.shape, c.dtype, 4), true);
  Tensor rm = random_tensor({C}, c.dtype, 5), rv = random_tensor({C}, c.dtype, 6, 0.5, 2.0);
  const Variable res = c.residual ? r : Variable();
  Variable y;
  if (fused) {
    y = ag::batchnorm_relu(x, gamma, beta, rm, rv, c.training, res);
  } else {
    const Variable h = ag::batchnorm(x, gamma, beta, rm, rv, c.training);
    y = ag::relu(c.residual ? ag::add(h, r) : h);
  }
  y.backward(random_tensor(c.shape, c.dtype, 7));
  Results out;
  out.add("y", y.value());
  out.add("running_mean", rm);
  out.add("running_var", rv);
  out.add("dx", x.grad());
  out.add("dgamma", gamma.grad());
  out.add("dbeta", beta.grad());
  if (c.residual) out.add("dr", r.grad());
  return out;
}

TEST(BatchNormRelu, EqualsTheCompositionBitwise) {
  int cases = 0;
  for (DType t : {DType::F32, DType::F64})
    for (const Shape& s : {Shape{2, 3, 5, 4, 3}, Shape{3, 4, 1, 1, 7}, Shape{9, 6}, Shape{2, 5, 17, 16, 32}})
      for (bool training : {true, false})
        for (bool residual : {false, true}) {
          const Case c{s, t, training, residual};
          const Results f = run(c, true), u = run(c, false);
          ASSERT_EQ(f.names, u.names);
          for (size_t k = 0; k < f.names.size(); ++k)
            EXPECT_TRUE(f.bytes[k] == u.bytes[k]) << c.str() << ": " << f.names[k] << " differs from the composition";
          ++cases;
        }
  EXPECT_EQ(cases, 32);
}

// (The largest shape above has 87040 values, past the CPU kernels' OpenMP threshold of 65536, so the
// parallel loops are compared too.) The comparison is not vacuous: the ReLU zeroes some outputs and keeps
// others, and the running statistics move.
TEST(BatchNormRelu, TheCheckedCasesExerciseTheReluAndTheRunningStatistics) {
  const int64_t C = 3;
  Variable x(random_tensor({2, C, 5, 4, 3}, DType::F32, 1, -2.0, 3.0), true);
  Variable gamma(random_tensor({C}, DType::F32, 2, 0.5, 1.5), true), beta(random_tensor({C}, DType::F32, 3), true);
  Tensor rm = random_tensor({C}, DType::F32, 5), rv = random_tensor({C}, DType::F32, 6, 0.5, 2.0);
  const std::vector<float> rm0 = rm.to_vector<float>();
  const std::vector<float> y = ag::batchnorm_relu(x, gamma, beta, rm, rv, true).value().to_vector<float>();
  int zeros = 0, positive = 0;
  for (float v : y) {
    if (v == 0.0f) ++zeros;
    if (v > 0.0f) ++positive;
  }
  EXPECT_GT(zeros, 10);
  EXPECT_GT(positive, 10);
  EXPECT_EQ(zeros + positive, int(y.size())) << "a negative or NaN output";
  EXPECT_NE(rm.to_vector<float>(), rm0);
}

// The primitive directly: asking for dr leaves dx, dgamma, dbeta unchanged, and dr is dy masked by y > 0.
TEST(BatchNormRelu, PrimitiveDrIsTheMaskedGradientAndOptional) {
  const Shape s{2, 3, 4, 3, 5};
  const int64_t C = 3;
  Backend& be = backend(Device::cpu());
  const Tensor x = random_tensor(s, DType::F64, 11, -1.0, 2.0), r = random_tensor(s, DType::F64, 12);
  const Tensor gamma = random_tensor({C}, DType::F64, 13, 0.5, 1.5), beta = random_tensor({C}, DType::F64, 14);
  const Tensor dy = random_tensor(s, DType::F64, 15);
  Tensor rm = Tensor::zeros({C}, DType::F64), rv = Tensor::full({C}, 1.0, DType::F64);
  Tensor y = Tensor::empty(s, DType::F64);
  Tensor mean = Tensor::empty({C}, DType::F64), invstd = Tensor::empty({C}, DType::F64);
  be.batchnorm_relu_forward_train(x, gamma, beta, r, y, mean, invstd, rm, rv, BatchNormArgs{});
  auto backward = [&](bool want_dr) {
    Tensor dx = Tensor::empty(s, DType::F64), dg = Tensor::empty({C}, DType::F64), db = Tensor::empty({C}, DType::F64);
    Tensor dr = want_dr ? Tensor::empty(s, DType::F64) : Tensor();
    be.batchnorm_relu_backward(x, y, dy, gamma, mean, invstd, dx, dg, db, dr);
    return std::vector<Tensor>{dx, dg, db, dr};
  };
  const std::vector<Tensor> with = backward(true), without = backward(false);
  for (int k = 0; k < 3; ++k) EXPECT_EQ(with[size_t(k)].to_vector<double>(), without[size_t(k)].to_vector<double>());
  const std::vector<double> yv = y.to_vector<double>(), dyv = dy.to_vector<double>(), dr = with[3].to_vector<double>();
  for (size_t i = 0; i < yv.size(); ++i) ASSERT_EQ(dr[i], yv[i] > 0 ? dyv[i] : 0.0) << "element " << i;
}

// A NaN in x reaches y (relu_forward lets NaN through) the same way in both paths.
TEST(BatchNormRelu, NanPropagatesAsInTheComposition) {
  const Shape s{2, 2, 3};
  for (bool training : {true, false}) {
    Tensor xs = random_tensor(s, DType::F32, 21);
    xs.data<float>()[4] = std::numeric_limits<float>::quiet_NaN();
    Tensor rm1 = Tensor::zeros({2}, DType::F32), rv1 = Tensor::full({2}, 1.0, DType::F32);
    Tensor rm2 = rm1.clone(), rv2 = rv1.clone();
    const Variable g(Tensor::full({2}, 1.0, DType::F32)), b(Tensor::zeros({2}, DType::F32));
    const std::vector<float> fused =
        ag::batchnorm_relu(Variable(xs), g, b, rm1, rv1, training).value().to_vector<float>();
    const std::vector<float> unfused =
        ag::relu(ag::batchnorm(Variable(xs), g, b, rm2, rv2, training)).value().to_vector<float>();
    ASSERT_EQ(fused.size(), unfused.size());
    for (size_t i = 0; i < fused.size(); ++i) {
      EXPECT_EQ(std::isnan(fused[i]), std::isnan(unfused[i])) << "element " << i;
      if (!std::isnan(fused[i])) EXPECT_EQ(fused[i], unfused[i]) << "element " << i;
    }
    EXPECT_TRUE(std::isnan(fused[4]));
  }
}

// bf16 activations under the BF16 autocast (float32 gamma, beta and statistics): without a residual the fused
// op is still bit for bit the composition (the ReLU commutes with rounding to bf16, and the backward reads
// the same widened x, y and dy); with one, the fused op adds r before rounding once where the composition
// rounds bn(x) to bf16 first, so y agrees to bf16's rounding (2^-7 of its largest value) and the running
// statistics (which r does not touch) bit for bit; the gradients are left out there, since an output that
// rounds to 0 one way and not the other flips the ReLU's mask (the primitive's bf16 path is checked in
// tests/engine/test_bf16.cpp).
TEST(BatchNormRelu, Bf16ActivationsUnderAutocast) {
  const Shape s{2, 3, 4, 3, 5};
  const int64_t C = 3;
  AutocastGuard bf16(Precision::BF16);
  for (bool training : {true, false})
    for (bool residual : {false, true}) {
      auto run_once = [&](bool fused) {
        Variable x(random_tensor(s, DType::BF16, 51, -2.0, 3.0), true), r(random_tensor(s, DType::BF16, 52), true);
        Variable gamma(random_tensor({C}, DType::F32, 53, 0.5, 1.5), true);
        Variable beta(random_tensor({C}, DType::F32, 54), true);
        Tensor rm = random_tensor({C}, DType::F32, 55), rv = random_tensor({C}, DType::F32, 56, 0.5, 2.0);
        const Variable res = residual ? r : Variable();
        Variable y = fused ? ag::batchnorm_relu(x, gamma, beta, rm, rv, training, res)
                           : ag::relu(residual ? ag::add(ag::batchnorm(x, gamma, beta, rm, rv, training), r)
                                               : ag::batchnorm(x, gamma, beta, rm, rv, training));
        EXPECT_EQ(y.dtype(), DType::BF16);
        y.backward(random_tensor(s, DType::BF16, 57));
        std::vector<Tensor> out{y.value(), x.grad(), gamma.grad(), beta.grad(), rm, rv};
        if (residual) out.push_back(r.grad());
        return out;
      };
      const std::vector<Tensor> f = run_once(true), u = run_once(false);
      const std::string what = std::string(training ? "train" : "eval") + (residual ? " +r" : "");
      const char* names[] = {"y", "dx", "dgamma", "dbeta", "running_mean", "running_var", "dr"};
      for (size_t k = 0; k < f.size(); ++k) {
        ASSERT_EQ(f[k].dtype(), u[k].dtype()) << what << " " << names[k];
        const bool gradient = k == 1 || k == 2 || k == 3 || k == 6;
        if (residual && gradient) continue;
        const std::vector<double> a = f[k].to(DType::F64).to_vector<double>();
        const std::vector<double> b = u[k].to(DType::F64).to_vector<double>();
        double scale = 0;
        for (double v : b) scale = std::max(scale, std::fabs(v));
        const double tolerance = residual && k == 0 ? std::ldexp(scale, -7) : 0.0;
        for (size_t i = 0; i < a.size(); ++i)
          ASSERT_NEAR(a[i], b[i], tolerance) << what << " " << names[k] << " element " << i;
      }
    }
}

// A residual of another dtype than x (bf16 x, float32 r) is the composition's business: the add promotes to
// float32 as ag::add does (the primitive would refuse the mix).
TEST(BatchNormRelu, ResidualOfAnotherDtypeRunsTheComposition) {
  const Shape s{2, 3, 4, 3, 5};
  const int64_t C = 3;
  Variable x(random_tensor(s, DType::BF16, 61), true), r(random_tensor(s, DType::F32, 62), true);
  Variable gamma(random_tensor({C}, DType::F32, 63, 0.5, 1.5), true), beta(random_tensor({C}, DType::F32, 64), true);
  Tensor rm1 = Tensor::zeros({C}, DType::F32), rv1 = Tensor::full({C}, 1.0, DType::F32);
  Tensor rm2 = rm1.clone(), rv2 = rv1.clone();
  const Variable f = ag::batchnorm_relu(x, gamma, beta, rm1, rv1, true, r);
  const Variable u = ag::relu(ag::add(ag::batchnorm(x, gamma, beta, rm2, rv2, true), r));
  EXPECT_EQ(f.dtype(), DType::F32);
  EXPECT_EQ(f.value().to_vector<float>(), u.value().to_vector<float>());
}

// --sync-bn: with a reducer installed, the fused op takes the synchronized batch norm (the unfused
// composition, see autograd/functions/norm.cpp). A reducer that sums over one process leaves the numbers
// of the per-process op (to rounding: the synchronized path computes its statistics differently) and
// passes the gradient check; eval mode never calls the reducer.
class CountingReducer final : public BatchNormStatsReducer {
 public:
  int calls = 0;
  void all_reduce_sum(Tensor&) override { ++calls; }
};

TEST(BatchNormRelu, UnderSyncBatchNormGoesThroughTheReducer) {
  const Shape s{2, 3, 3, 2, 2};
  const int64_t C = 3;
  auto run_once = [&](bool training, std::vector<Tensor>* grads) {
    Variable x(random_tensor(s, DType::F64, 31, -2.0, 3.0), true), r(random_tensor(s, DType::F64, 32), true);
    Variable gamma(random_tensor({C}, DType::F64, 33, 0.5, 1.5), true), beta(random_tensor({C}, DType::F64, 34), true);
    Tensor rm = Tensor::zeros({C}, DType::F64), rv = Tensor::full({C}, 1.0, DType::F64);
    Variable y = ag::batchnorm_relu(x, gamma, beta, rm, rv, training, r);
    y.backward(random_tensor(s, DType::F64, 35));
    *grads = {y.value(), x.grad(), gamma.grad(), beta.grad(), r.grad(), rm, rv};
  };
  for (bool training : {true, false}) {
    std::vector<Tensor> plain, synced;
    run_once(training, &plain);
    CountingReducer reducer;
    set_batchnorm_stats_reducer(&reducer);
    run_once(training, &synced);
    set_batchnorm_stats_reducer(nullptr);
    EXPECT_EQ(reducer.calls > 0, training) << (training ? "train" : "eval") << ": " << reducer.calls << " calls";
    const char* what[] = {"y", "dx", "dgamma", "dbeta", "dr", "running_mean", "running_var"};
    for (size_t k = 0; k < plain.size(); ++k) {
      const std::vector<double> a = plain[k].to_vector<double>(), b = synced[k].to_vector<double>();
      ASSERT_EQ(a.size(), b.size());
      for (size_t i = 0; i < a.size(); ++i)
        ASSERT_NEAR(a[i], b[i], 1e-12 * std::max(1.0, std::fabs(a[i]))) << what[k] << " element " << i;
    }
  }
  CountingReducer reducer;
  set_batchnorm_stats_reducer(&reducer);
  Tensor rm = Tensor::zeros({C}, DType::F64), rv = Tensor::full({C}, 1.0, DType::F64);
  const GradCheckResult g = gradcheck(
      [&](const std::vector<Variable>& v) { return ag::batchnorm_relu(v[0], v[1], v[2], rm, rv, true, v[3]); },
      {Variable(random_tensor(s, DType::F64, 36, -2.0, 3.0), true),
       Variable(random_tensor({C}, DType::F64, 37, 0.5, 1.5), true), Variable(random_tensor({C}, DType::F64, 38), true),
       Variable(random_tensor(s, DType::F64, 39), true)});
  set_batchnorm_stats_reducer(nullptr);
  std::printf("[gradcheck] synced batchnorm_relu: max relative error %.3g\n", g.max_rel_error);
  EXPECT_LT(g.max_rel_error, 1e-6) << g.worst;
  EXPECT_GT(reducer.calls, 0);
}

}  // namespace
