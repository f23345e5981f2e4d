// Conv3d, BatchNorm, Linear and ResBlock: parameters registered under PyTorch's names, forwards that call
// the differentiable functions of autograd/functions.h.
#include "models/layers.h"

#include <cmath>

namespace hdssl::models {

Conv3d::Conv3d(int64_t cin, int64_t cout, int k, bool has_bias, Rng& rng, const ModuleOptions& o) : k_(k) {
  HDSSL_CHECK(k % 2 == 1) << "Conv3d kernel must be odd, got " << k;
  const double bound = 1.0 / std::sqrt(double(cin * k * k * k));
  weight = register_parameter("weight", uniform_tensor({cout, cin, k, k, k}, bound, rng, o.dtype, o.device));
  if (has_bias) bias = register_parameter("bias", uniform_tensor({cout}, bound, rng, o.dtype, o.device));
}

Variable Conv3d::forward_rows(const Variable& rows) const {
  HDSSL_CHECK(k_ == 1) << "forward_rows needs a 1x1x1 conv";
  return ag::linear(rows, ag::reshape(weight, {weight.size(0), weight.size(1)}), bias);
}

BatchNorm::BatchNorm(int64_t c, const ModuleOptions& o) {
  weight = register_parameter("weight", Tensor::full({c}, 1.0, o.dtype, o.device));
  bias = register_parameter("bias", Tensor::zeros({c}, o.dtype, o.device));
  running_mean = Tensor::zeros({c}, o.dtype, o.device);
  running_var = Tensor::full({c}, 1.0, o.dtype, o.device);
  register_buffer("running_mean", &running_mean);
  register_buffer("running_var", &running_var);
  register_counter("num_batches_tracked", &num_batches_tracked);
}

Variable BatchNorm::forward(const Variable& x) {
  if (training()) ++num_batches_tracked;
  return ag::batchnorm(x, weight, bias, running_mean, running_var, training());
}

Variable BatchNorm::forward_relu(const Variable& x, const Variable& residual) {
  if (training()) ++num_batches_tracked;
  return ag::batchnorm_relu(x, weight, bias, running_mean, running_var, training(), residual);
}

Linear::Linear(int64_t in, int64_t out, Rng& rng, const ModuleOptions& o) {
  const double bound = 1.0 / std::sqrt(double(in));
  weight = register_parameter("weight", uniform_tensor({out, in}, bound, rng, o.dtype, o.device));
  bias = register_parameter("bias", uniform_tensor({out}, bound, rng, o.dtype, o.device));
}

ResBlock::ResBlock(int64_t c, int k, Rng& rng, const ModuleOptions& o) {
  auto& layers = register_module("layers", std::make_unique<ModuleList>());
  bn0_ = &layers.add_named("0", std::make_unique<BatchNorm>(c, o));
  conv2_ = &layers.add_named("2", std::make_unique<Conv3d>(c, c, k, true, rng, o));
  bn3_ = &layers.add_named("3", std::make_unique<BatchNorm>(c, o));
  conv5_ = &layers.add_named("5", std::make_unique<Conv3d>(c, c, k, true, rng, o));
}

Variable ResBlock::forward(const Variable& x) {
  Variable h = conv2_->forward(bn0_->forward_relu(x));
  h = conv5_->forward(bn3_->forward_relu(h));
  return ag::add(h, x);
}

}  // namespace hdssl::models
