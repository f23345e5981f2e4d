// FPN3d forward: stem, encoder (ResBlocks, keep the skip, max-pool, 1x1x1 conv to 2c), bottom, decoder
// (1x1x1 conv to c, nearest upsample, crop to the skip's size, add the lateral 1x1x1 conv of the skip,
// ResBlocks). Construction order mirrors the PyTorch module so a state dict lists the same names.
#include "models/fpn3d.h"

namespace hdssl::models {

ResStack::ResStack(int64_t c, int blocks, Rng& rng, const ModuleOptions& o) {
  auto& layers = register_module("layers", std::make_unique<ModuleList>());
  for (int j = 0; j < blocks; ++j) blocks_.push_back(&layers.add(std::make_unique<ResBlock>(c, 3, rng, o)));
}

Variable ResStack::forward(Variable x) {
  for (ResBlock* b : blocks_) x = b->forward(x);
  return x;
}

FPN3d::FPN3d(const FPN3dConfig& cfg, Rng& rng, const ModuleOptions& o) : cfg_(cfg) {
  HDSSL_CHECK(cfg.base >= 1 && cfg.scales >= 1 && cfg.blocks >= 1)
      << "FPN3d needs base, scales, blocks >= 1 (got " << cfg.base << ", " << cfg.scales << ", " << cfg.blocks << ")";
  const int L = cfg.scales - 1;  // encoder / decoder levels
  first_conv_ = &register_module("first_conv", std::make_unique<Conv3d>(1, cfg.base, 3, true, rng, o));
  auto& left = register_module("left_blocks", std::make_unique<ModuleList>());
  auto& down = register_module("down_blocks", std::make_unique<ModuleList>());
  for (int i = 0; i < L; ++i) {
    const int64_t c = cfg.channels(i);
    left_.push_back(&left.add(std::make_unique<ResStack>(c, cfg.blocks, rng, o)));
    auto& seq = down.add(std::make_unique<ModuleList>());
    down_.push_back(&seq.add_named("1", std::make_unique<Conv3d>(c, 2 * c, 1, true, rng, o)));
  }
  bottom_ = &register_module("bottom_block", std::make_unique<ResStack>(cfg.channels(L), cfg.blocks, rng, o));
  // Decoder lists are stored deepest first: k = 0 works on level L-1 (next to the bottom).
  auto& up = register_module("up_blocks", std::make_unique<ModuleList>());
  auto& skip = register_module("skip_blocks", std::make_unique<ModuleList>());
  auto& right = register_module("right_blocks", std::make_unique<ModuleList>());
  for (int k = 0; k < L; ++k) {
    const int64_t c = cfg.channels(L - 1 - k);
    auto& seq = up.add(std::make_unique<ModuleList>());
    up_.push_back(&seq.add_named("0", std::make_unique<Conv3d>(2 * c, c, 1, true, rng, o)));
    skip_.push_back(&skip.add(std::make_unique<Conv3d>(c, c, 1, true, rng, o)));
    right_.push_back(&right.add(std::make_unique<ResStack>(c, cfg.blocks, rng, o)));
  }
}

std::vector<Variable> FPN3d::forward(const Variable& input) {
  const int L = cfg_.scales - 1;
  Variable x = first_conv_->forward(input);
  std::vector<Variable> skips;
  for (int i = 0; i < L; ++i) {
    x = left_[size_t(i)]->forward(x);
    skips.push_back(x);
    x = down_[size_t(i)]->forward(ag::maxpool2(x));
  }
  x = bottom_->forward(x);
  std::vector<Variable> pyramid(size_t(cfg_.scales));
  pyramid[size_t(L)] = x;
  for (int k = 0; k < L; ++k) {
    const Variable& s = skips[size_t(L - 1 - k)];
    x = ag::upsample2(up_[size_t(k)]->forward(x));
    if (x.size(2) != s.size(2) || x.size(3) != s.size(3) || x.size(4) != s.size(4))
      x = ag::crop(x, {0, 0, 0}, {s.size(2), s.size(3), s.size(4)});
    x = right_[size_t(k)]->forward(ag::add(x, skip_[size_t(k)]->forward(s)));
    pyramid[size_t(L - 1 - k)] = x;
  }
  return pyramid;
}

}  // namespace hdssl::models
