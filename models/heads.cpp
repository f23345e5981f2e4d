// The pretraining heads: balanced per-scale projections, the projection MLP and the restoration head.
#include "models/heads.h"

namespace hdssl::models {

ScaleProjections::ScaleProjections(int base, int scales, int width, Rng& rng, const ModuleOptions& o) {
  for (int i = 0; i < scales; ++i)
    convs_.push_back(&register_module(std::to_string(i), std::make_unique<Conv3d>(int64_t(base) << i, width, 1, true, rng, o)));
}

ProjectionHead::ProjectionHead(int64_t d, int64_t out, Rng& rng, const ModuleOptions& o) {
  fc0_ = &register_module("0", std::make_unique<Linear>(d, d, rng, o));
  bn1_ = &register_module("1", std::make_unique<BatchNorm>(d, o));
  fc3_ = &register_module("3", std::make_unique<Linear>(d, d, rng, o));
  bn4_ = &register_module("4", std::make_unique<BatchNorm>(d, o));
  fc6_ = &register_module("6", std::make_unique<Linear>(d, out, rng, o));
}

Variable ProjectionHead::forward(const Variable& x) {
  Variable h = bn1_->forward_relu(fc0_->forward(x));
  h = bn4_->forward_relu(fc3_->forward(h));
  return ag::l2_normalize(fc6_->forward(h));
}

RestorationHead::RestorationHead(int base, bool single_conv, Rng& rng, const ModuleOptions& o) {
  if (single_conv) {
    conv0_ = &register_module("0", std::make_unique<Conv3d>(base, 1, 1, true, rng, o));
    return;
  }
  const int hidden = base / 2 > 0 ? base / 2 : 1;
  conv0_ = &register_module("0", std::make_unique<Conv3d>(base, hidden, 3, true, rng, o));
  bn1_ = &register_module("1", std::make_unique<BatchNorm>(hidden, o));
  conv3_ = &register_module("3", std::make_unique<Conv3d>(hidden, 1, 1, true, rng, o));
}

Variable RestorationHead::forward(const Variable& level0) {
  Variable y = conv0_->forward(level0);
  if (!conv3_) return y;
  return conv3_->forward(bn1_->forward_relu(y));
}

}  // namespace hdssl::models
