// The linear probe, the non-linear head and the Segmenter (see segmentation.h for the design).
#include "models/segmentation.h"

#include <regex>
#include <set>

#include "autograd/functions.h"
#include "models/checkpoint.h"

namespace hdssl::models {

// Crops x spatially to `like`'s size when they differ (after a x2 upsample of an odd-sized level).
static Variable crop_to(const Variable& x, const Variable& like) {
  if (x.size(2) == like.size(2) && x.size(3) == like.size(3) && x.size(4) == like.size(4)) return x;
  return ag::crop(x, {0, 0, 0}, {like.size(2), like.size(3), like.size(4)});
}

LinearProbe::LinearProbe(const FPN3dConfig& fpn, int classes, Rng& rng, const ModuleOptions& o) {
  for (int i = 0; i < fpn.scales; ++i)
    convs_.push_back(&register_module(std::to_string(i),
                                      std::make_unique<Conv3d>(fpn.channels(i), classes, 1, i == 0, rng, o)));
}

Variable LinearProbe::forward(const std::vector<Variable>& pyramid) const {
  HDSSL_CHECK(pyramid.size() == convs_.size()) << "LinearProbe: " << pyramid.size() << " levels, expected " << convs_.size();
  Variable out;
  for (int i = int(convs_.size()) - 1; i >= 0; --i) {
    Variable o = convs_[size_t(i)]->forward(pyramid[size_t(i)]);
    out = out.defined() ? ag::add(crop_to(ag::upsample2(out), o), o) : o;
  }
  return out;
}

NonLinearHead::NonLinearHead(const FPN3dConfig& fpn, int classes, Rng& rng, const ModuleOptions& o) {
  auto& blocks = register_module("blocks", std::make_unique<ModuleList>());
  for (int i = 0; i < fpn.scales; ++i) blocks_.push_back(&blocks.add(std::make_unique<ResBlock>(fpn.channels(i), 1, rng, o)));
  auto& ups = register_module("ups", std::make_unique<ModuleList>());
  for (int i = 0; i + 1 < fpn.scales; ++i)
    ups_.push_back(&ups.add(std::make_unique<Conv3d>(fpn.channels(i + 1), fpn.channels(i), 1, true, rng, o)));
  out_ = &register_module("out", std::make_unique<Conv3d>(fpn.channels(0), classes, 1, true, rng, o));
}

Variable NonLinearHead::forward(const std::vector<Variable>& pyramid) {
  HDSSL_CHECK(pyramid.size() == blocks_.size()) << "NonLinearHead: " << pyramid.size() << " levels, expected " << blocks_.size();
  const int L = int(blocks_.size()) - 1;
  Variable h = blocks_[size_t(L)]->forward(pyramid[size_t(L)]);
  for (int i = L - 1; i >= 0; --i) {
    const Variable& f = pyramid[size_t(i)];
    h = blocks_[size_t(i)]->forward(ag::add(crop_to(ag::upsample2(ups_[size_t(i)]->forward(h)), f), f));
  }
  return out_->forward(h);
}

HeadKind parse_head_kind(const std::string& s) {
  if (s == "linear") return HeadKind::Linear;
  if (s == "nonlinear") return HeadKind::NonLinear;
  throw Error("unknown head '" + s + "' (expected linear or nonlinear)");
}

const char* head_kind_name(HeadKind k) { return k == HeadKind::Linear ? "linear" : "nonlinear"; }

Segmenter::Segmenter(const SegmenterConfig& cfg, Rng& rng, const ModuleOptions& o) : cfg_(cfg) {
  HDSSL_CHECK(cfg.classes >= 1) << "Segmenter needs at least one class";
  backbone_ = &register_module("backbone", std::make_unique<FPN3d>(cfg.fpn, rng, o));
  if (cfg.head == HeadKind::Linear) {
    linear_ = &register_module("head", std::make_unique<LinearProbe>(cfg.fpn, cfg.classes, rng, o));
    head_ = linear_;
  } else {
    nonlinear_ = &register_module("head", std::make_unique<NonLinearHead>(cfg.fpn, cfg.classes, rng, o));
    head_ = nonlinear_;
  }
}

void Segmenter::set_backbone_frozen(bool frozen) {
  frozen_ = frozen;
  backbone_->set_requires_grad(!frozen);
  if (frozen) backbone_->zero_grad();
}

Variable Segmenter::forward(const Tensor& x) {
  std::vector<Variable> pyramid;
  if (frozen_) {
    backbone_->train(frozen_bn_training_ && training());
    NoGradGuard no_grad;
    pyramid = backbone_->forward(Variable(x));
  } else {
    backbone_->train(training());
    pyramid = backbone_->forward(Variable(x));
  }
  return linear_ ? linear_->forward(pyramid) : nonlinear_->forward(pyramid);
}

std::vector<Variable> Segmenter::head_parameters() const {
  std::vector<Variable> v;
  for (auto& [n, p] : head_->named_parameters()) v.push_back(p);
  return v;
}

std::vector<Variable> Segmenter::backbone_parameters() const {
  std::vector<Variable> v;
  for (auto& [n, p] : backbone_->named_parameters()) v.push_back(p);
  return v;
}

std::string backbone_prefix_of(const SafeTensors& st) {
  if (st.find("backbone.first_conv.weight")) return "backbone.";
  if (st.find("first_conv.weight")) return "";
  throw CheckpointError("checkpoint holds neither backbone.first_conv.weight nor first_conv.weight: not an FPN3d");
}

FPN3dConfig fpn_config_of(const SafeTensors& st, const std::string& prefix) {
  const StoredTensor* first = st.find(prefix + "first_conv.weight");
  if (!first || first->shape.size() != 5) throw CheckpointError("no 5D " + prefix + "first_conv.weight in the checkpoint");
  FPN3dConfig c;
  c.base = int(first->shape[0]);
  std::set<int> downs, blocks0, blocks_bottom;
  const std::regex down(std::regex_replace(prefix, std::regex("\\."), "\\.") + "down_blocks\\.(\\d+)\\..*");
  const std::regex left(std::regex_replace(prefix, std::regex("\\."), "\\.") + "left_blocks\\.0\\.layers\\.(\\d+)\\..*");
  const std::regex bottom(std::regex_replace(prefix, std::regex("\\."), "\\.") + "bottom_block\\.layers\\.(\\d+)\\..*");
  for (const StoredTensor& t : st.tensors) {
    std::smatch m;
    if (std::regex_match(t.name, m, down)) downs.insert(std::stoi(m[1]));
    if (std::regex_match(t.name, m, left)) blocks0.insert(std::stoi(m[1]));
    if (std::regex_match(t.name, m, bottom)) blocks_bottom.insert(std::stoi(m[1]));
  }
  c.scales = int(downs.size()) + 1;
  c.blocks = int(downs.empty() ? blocks_bottom.size() : blocks0.size());
  if (c.blocks < 1) throw CheckpointError("cannot tell the ResBlocks per level from the checkpoint's names");
  return c;
}

}  // namespace hdssl::models
