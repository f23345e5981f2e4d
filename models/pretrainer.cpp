// The pretraining step's forward: pyramid -> voxel vectors -> embeddings -> InfoNCE, plus restoration.
#include "models/pretrainer.h"

#include <nlohmann/json.hpp>

namespace hdssl::models {

PretrainConfig PretrainConfig::ours() { return PretrainConfig{}; }

PretrainConfig PretrainConfig::vox2vec() {
  PretrainConfig c;
  c.arch = "vox2vec";
  c.base = 16;
  c.scales = 6;
  c.balanced = false;
  c.restoration = false;
  return c;
}

int PretrainConfig::voxel_dim() const {
  if (balanced) return proj_width * scales;
  int d = 0;
  for (int i = 0; i < scales; ++i) d += base << i;
  return d;
}

std::string PretrainConfig::to_json() const {
  nlohmann::json j = {{"arch", arch}, {"base_channels", base}, {"scales", scales}, {"blocks", blocks},
                      {"balanced", balanced}, {"proj_width", proj_width}, {"freeze_projections", freeze_projections},
                      {"embed_dim", embed_dim}, {"tau", tau}, {"lambda", lambda}, {"restoration", restoration},
                      {"restoration_single_conv", restoration_single_conv}};
  return j.dump();
}

PretrainConfig PretrainConfig::from_json(const std::string& s) {
  auto j = nlohmann::json::parse(s);
  PretrainConfig c;
  c.arch = j.at("arch");
  c.base = j.at("base_channels");
  c.scales = j.at("scales");
  c.blocks = j.at("blocks");
  c.balanced = j.at("balanced");
  c.proj_width = j.at("proj_width");
  c.freeze_projections = j.at("freeze_projections");
  c.embed_dim = j.at("embed_dim");
  c.tau = j.at("tau");
  c.lambda = j.at("lambda");
  c.restoration = j.at("restoration");
  c.restoration_single_conv = j.at("restoration_single_conv");
  return c;
}

Pretrainer::Pretrainer(const PretrainConfig& cfg, Rng& rng, const ModuleOptions& o) : cfg_(cfg) {
  backbone_ = &register_module("backbone", std::make_unique<FPN3d>(FPN3dConfig{cfg.base, cfg.scales, cfg.blocks}, rng, o));
  if (cfg.balanced) {
    projs_ = &register_module("scale_projs", std::make_unique<ScaleProjections>(cfg.base, cfg.scales, cfg.proj_width, rng, o));
    if (cfg.freeze_projections) projs_->set_requires_grad(false);
  }
  head_ = &register_module("proj_head", std::make_unique<ProjectionHead>(cfg.voxel_dim(), cfg.embed_dim, rng, o));
  if (cfg.restoration)
    rest_ = &register_module("restoration", std::make_unique<RestorationHead>(cfg.base, cfg.restoration_single_conv, rng, o));
}

Variable Pretrainer::embed(const Tensor& view, const Tensor& coords, Variable* level0) {
  std::vector<Variable> pyramid = backbone_->forward(Variable(view));
  std::vector<Variable> rows;
  for (int i = 0; i < cfg_.scales; ++i) {
    Variable r = ag::gather_voxels(pyramid[size_t(i)], coords, i);  // [B*n, base*2^i]
    rows.push_back(projs_ ? projs_->project(i, r) : r);             // [B*n, 32] when balanced
  }
  if (level0) *level0 = pyramid[0];
  return head_->forward(ag::concat_channels(rows));  // [B*n, d] -> [B*n, 128]
}

PretrainLoss Pretrainer::loss(const PretrainInputs& in) {
  PretrainLoss out;
  Variable level0_a, level0_b;
  Variable za = embed(in.view_a, in.coords_a, &level0_a);
  Variable lr_a = rest_ ? ag::mse(rest_->forward(level0_a), in.target_a) : Variable();
  level0_a = Variable();  // the graph keeps what backward needs
  Variable zb = embed(in.view_b, in.coords_b, &level0_b);
  Variable lr_b = rest_ ? ag::mse(rest_->forward(level0_b), in.target_b) : Variable();
  if (gather_) za = gather_(za), zb = gather_(zb);  // --gather-negatives (dist/gather_rows.h)
  out.contrastive = ag::infonce(za, zb, cfg_.tau);
  out.total = out.contrastive;
  if (rest_) {
    out.restoration = ag::scale(ag::add(lr_a, lr_b), 0.5);
    out.total = ag::add(out.contrastive, ag::scale(out.restoration, cfg_.lambda));
  }
  return out;
}

}  // namespace hdssl::models
