// The downstream training step and its checkpoints.
#include "eval/trainer.h"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "autograd/functions.h"
#include "models/checkpoint.h"

namespace hdssl::eval {

Mode parse_mode(const std::string& s) {
  if (s == "linear" || s == "probing") return Mode::Linear;
  if (s == "nonlinear" || s == "non-linear") return Mode::NonLinear;
  if (s == "finetune" || s == "fine_tuning" || s == "fine-tuning") return Mode::Finetune;
  if (s == "scratch" || s == "from_scratch") return Mode::Scratch;
  throw Error("unknown mode '" + s + "' (expected linear, nonlinear, finetune or scratch; aliases probing, "
              "fine_tuning, from_scratch)");
}

const char* mode_name(Mode m) {
  switch (m) {
    case Mode::Linear: return "linear";
    case Mode::NonLinear: return "nonlinear";
    case Mode::Finetune: return "finetune";
    default: return "scratch";
  }
}

models::HeadKind head_of(Mode m, models::HeadKind finetune_head) {
  switch (m) {
    case Mode::Linear: return models::HeadKind::Linear;
    case Mode::NonLinear: return models::HeadKind::NonLinear;
    default: return finetune_head;
  }
}

nlohmann::json train_config_to_json(const TrainConfig& c) {
  return {{"mode", mode_name(c.mode)},
          {"steps", c.steps},
          {"batch", c.batch},
          {"lr", c.lr},
          {"freeze_steps", c.freeze_steps},
          {"warmup_steps", c.warmup_steps},
          {"backbone_lr_start", c.backbone_lr_start},
          {"frozen_bn_training", c.frozen_bn_training}};
}

bool backbone_frozen_at(const TrainConfig& c, int64_t t) {
  switch (c.mode) {
    case Mode::Linear:
    case Mode::NonLinear: return true;
    case Mode::Finetune: return t < c.freeze_steps;
    default: return false;
  }
}

double backbone_lr_at(const TrainConfig& c, int64_t t) {
  if (backbone_frozen_at(c, t)) return 0.0;
  if (c.mode == Mode::Scratch) return c.lr;
  const double u = double(t - c.freeze_steps);
  if (c.warmup_steps <= 0 || c.backbone_lr_start >= c.lr) return c.lr;
  return std::min(c.lr, c.backbone_lr_start * std::pow(c.lr / c.backbone_lr_start, u / double(c.warmup_steps)));
}

Trainer::Trainer(models::Segmenter& model, const TrainConfig& cfg, Device device)
    : model_(model), cfg_(cfg), device_(device) {
  AdamArgs a;
  a.lr = cfg.lr;
  head_opt_ = std::make_unique<Adam>(model.head_parameters(), a);
  backbone_opt_ = std::make_unique<Adam>(model.backbone_parameters(), a);
  model.set_frozen_batchnorm_training(cfg.mode == Mode::Finetune && cfg.frozen_bn_training);
}

Variable Trainer::loss(const Variable& logits, const Tensor& target, Variable* bce, Variable* dice) {
  Variable b = ag::bce_with_logits(logits, target);
  Variable d = ag::soft_dice(ag::sigmoid(logits), target);
  if (bce) *bce = b;
  if (dice) *dice = d;
  return ag::add(b, d);
}

StepResult Trainer::step(const PatchBatch& batch, int64_t t) {
  const bool frozen = backbone_frozen_at(cfg_, t);
  if (frozen != model_.backbone_frozen()) model_.set_backbone_frozen(frozen);
  model_.train(true);
  head_opt_->zero_grad();
  backbone_opt_->zero_grad();
  Variable bce, dice;
  Variable l = loss(model_.forward(batch.image.to(device_)), batch.target.to(device_), &bce, &dice);
  l.backward();
  head_opt_->step();
  StepResult r;
  r.backbone_lr = backbone_lr_at(cfg_, t);
  if (!frozen) {
    backbone_opt_->set_lr(r.backbone_lr);
    backbone_opt_->step();
  }
  r.loss = l.value().item();
  r.bce = bce.value().item();
  r.dice = dice.value().item();
  return r;
}

static void add_adam(models::SafeTensors& st, Adam& opt, const std::string& group,
                     const std::vector<std::pair<std::string, Variable>>& named, nlohmann::json& counters) {
  for (size_t i = 0; i < named.size(); ++i) {
    st.add("optimizer." + group + ".exp_avg." + named[i].first, opt.exp_avg()[i]);
    st.add("optimizer." + group + ".exp_avg_sq." + named[i].first, opt.exp_avg_sq()[i]);
  }
  counters[group] = {{"step_count", opt.step_count()}, {"param_steps", opt.param_steps()}};
}

void Trainer::save(const std::string& path, int64_t completed_steps,
                   const std::map<std::string, std::string>& meta) const {
  models::SafeTensors st;
  models::add_module_state(st, model_);
  nlohmann::json counters;
  add_adam(st, *head_opt_, "head", model_.head().named_parameters(), counters);
  add_adam(st, *backbone_opt_, "backbone", model_.backbone().named_parameters(), counters);
  st.metadata = meta;
  st.metadata["hdssl.format"] = "hdssl.segment";
  st.metadata["hdssl.step"] = std::to_string(completed_steps);
  st.metadata["hdssl.optimizer"] = counters.dump();
  models::write_safetensors(path, st);
}

static void load_adam(const models::SafeTensors& st, Adam& opt, const std::string& group,
                      const std::vector<std::pair<std::string, Variable>>& named, const nlohmann::json& counters,
                      const std::string& path) {
  for (size_t i = 0; i < named.size(); ++i)
    for (auto [kind, dst] : {std::pair{"exp_avg", &opt.exp_avg()[i]}, std::pair{"exp_avg_sq", &opt.exp_avg_sq()[i]}}) {
      const std::string name = "optimizer." + group + "." + kind + "." + named[i].first;
      const models::StoredTensor* s = st.find(name);
      if (!s || s->shape != dst->shape()) throw models::CheckpointError(path + ": missing or mismatched " + name);
      *dst = models::to_tensor(*s, dst->dtype(), dst->device());
    }
  const auto& c = counters.at(group);
  opt.set_step_count(c.at("step_count").get<int64_t>());
  std::vector<int64_t> ps = c.at("param_steps").get<std::vector<int64_t>>();
  if (ps.size() != opt.param_steps().size())
    throw models::CheckpointError(path + ": optimizer " + group + " size differs");
  opt.param_steps() = ps;
}

int64_t Trainer::load(const std::string& path) {
  models::SafeTensors st = models::read_safetensors(path);
  auto fmt = st.metadata.find("hdssl.format");
  if (fmt == st.metadata.end() || fmt->second != "hdssl.segment")
    throw models::CheckpointError(path + ": not an evaluation checkpoint (hdssl.format != hdssl.segment)");
  models::load_module_state(model_, st, "", true, {"optimizer."});
  nlohmann::json counters;
  try {
    counters = nlohmann::json::parse(st.metadata.at("hdssl.optimizer"));
    load_adam(st, *head_opt_, "head", model_.head().named_parameters(), counters, path);
    load_adam(st, *backbone_opt_, "backbone", model_.backbone().named_parameters(), counters, path);
    return std::stoll(st.metadata.at("hdssl.step"));
  } catch (const models::CheckpointError&) {
    throw;
  } catch (const std::exception& e) {
    throw models::CheckpointError(path + ": bad optimizer metadata: " + e.what());
  }
}

}  // namespace hdssl::eval
