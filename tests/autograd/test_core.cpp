// The graph itself: accumulation when a value is used twice, no-grad mode, detach, freed closures,
// leaf gradient accumulation across backward calls; and that the gradient checker catches a wrong gradient.
#include <gtest/gtest.h>

#include <cmath>

#include "autograd/functions.h"
#include "autograd/gradcheck.h"

using namespace hdssl;

namespace {
Variable leaf(std::vector<double> v) {
  Shape s{int64_t(v.size())};
  return Variable(Tensor::from_vector(v, s), true);
}
}  // namespace

TEST(Autograd, ValueUsedTwiceAccumulates) {
  Variable x = leaf({1.0, -2.0, 3.0});
  Variable y = ag::sum(ag::mul(x, x));  // d/dx sum(x^2) = 2x: x enters mul twice
  y.backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2.0, -4.0, 6.0}));
  Variable z = ag::sum(ag::add(ag::scale(x, 3.0), x));  // dz/dx = 4, accumulated into the existing .grad
  z.backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{6.0, 0.0, 10.0}));
}

TEST(Autograd, NoGradAndDetachRecordNothing) {
  Variable x = leaf({1.0, 2.0});
  {
    NoGradGuard ng;
    Variable y = ag::relu(x);
    EXPECT_FALSE(y.requires_grad());
    EXPECT_TRUE(grad_enabled() == false);
  }
  EXPECT_TRUE(grad_enabled());
  Variable d = x.detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_EQ(d.value().storage(), x.value().storage());
  Variable y = ag::sum(ag::mul(x, d));  // gradient flows only through x: d(x*c)/dx = c
  y.backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{1.0, 2.0}));
}

TEST(Autograd, SavedTensorsAreReleasedAfterBackward) {
  Variable x = leaf({0.5, -0.5});
  Variable s = ag::sigmoid(x);
  std::weak_ptr<Storage> saved = s.value().storage();  // sigmoid saves its output for backward
  Variable y = ag::sum(s);
  s = Variable();
  EXPECT_FALSE(saved.expired());  // still held by the graph
  y.backward();
  EXPECT_TRUE(saved.expired());   // backward freed the closure and its saved output
  EXPECT_THROW(y.backward(), Error);  // a spent graph refuses a second pass with a clear error
}

TEST(Autograd, ElementwiseGradcheck) {
  Variable a = leaf({0.3, -1.2, 2.5, 0.7}), b = leaf({1.1, 0.4, -0.9, -2.0});
  auto f = [](const std::vector<Variable>& v) {
    return ag::mean(ag::mul(ag::sigmoid(ag::sub(v[0], v[1])), ag::relu(ag::add(ag::scale(v[0], 2.0), v[1]))));
  };
  GradCheckResult r = gradcheck(f, {a, b});
  EXPECT_LT(r.max_rel_error, 1e-6) << r.worst;
}

TEST(Autograd, GradcheckDetectsAWrongGradient) {
  // A deliberately wrong backward (factor 1.5) must be caught: the checker itself can fail.
  auto bad = [](const std::vector<Variable>& v) {
    Tensor y = Tensor::empty_like(v[0].value());
    backend(y.device()).axpby(2.0, v[0].value(), 0.0, v[0].value(), y);
    return make_result("bad", y, {v[0]}, [](const Tensor& g, const std::vector<bool>&, std::vector<Tensor>& gin) {
      gin[0] = Tensor::empty_like(g);
      backend(g.device()).axpby(3.0, g, 0.0, g, gin[0]);
    });
  };
  GradCheckResult r = gradcheck(bad, {leaf({1.0, 2.0, 3.0})});
  EXPECT_GT(r.max_rel_error, 0.4) << r.worst;
}

TEST(Autograd, ReshapeGradcheck) {
  Variable x(Tensor::from_vector<double>({0.5, -1.0, 2.0, 0.25, -0.75, 1.5}, {2, 3}), true);
  auto f = [](const std::vector<Variable>& v) {
    return ag::mul(ag::reshape(ag::sigmoid(v[0]), {3, -1}), ag::reshape(v[0], {3, 2}));
  };
  GradCheckResult r = gradcheck(f, {x});
  EXPECT_LT(r.max_rel_error, 1e-6) << r.worst;
  EXPECT_EQ(ag::reshape(x, {6}).shape(), (Shape{6}));
}

TEST(Autograd, ReluKeepsNaNLikePyTorch) {
  // A NaN must reach the loss (and be reported there), not be silenced into 0 by a ReLU.
  Variable x(Tensor::from_vector<float>({-1.f, std::nanf(""), 2.f}, {3}));
  std::vector<float> y = ag::relu(x).value().to_vector<float>();
  EXPECT_EQ(y[0], 0.f);
  EXPECT_TRUE(std::isnan(y[1]));
  EXPECT_EQ(y[2], 2.f);
}
