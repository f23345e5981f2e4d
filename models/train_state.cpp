// Training checkpoints: model + Adam + metadata in one safetensors file, and the backbone-only export.
#include "models/train_state.h"

#include <cmath>
#include <nlohmann/json.hpp>

namespace hdssl::models {
namespace {
// Names of the trainable parameters, in the order of model.parameters() (= Adam's order).
std::vector<std::string> trainable_names(const Module& m) {
  std::vector<std::string> out;
  for (const auto& [n, v] : m.named_parameters())
    if (v.requires_grad()) out.push_back(n);
  return out;
}

bool all_finite(const Tensor& t, int64_t* where) {
  if (!is_floating(t.dtype())) return true;
  Tensor h = t.to(Device::cpu()).to(DType::F64);
  const double* p = h.data<double>();
  for (int64_t i = 0; i < h.numel(); ++i)
    if (!std::isfinite(p[i])) { *where = i; return false; }
  return true;
}
}  // namespace

void check_finite(const Module& m, const std::string& what) {
  int64_t i = 0;
  for (const auto& [n, v] : m.named_parameters())
    HDSSL_CHECK(all_finite(v.value(), &i)) << what << ": parameter " << n << " " << v.value().describe()
                                           << " holds a non-finite value at element " << i;
  for (const auto& [n, b] : m.named_buffers())
    if (b.tensor) {
      HDSSL_CHECK(all_finite(*b.tensor, &i)) << what << ": buffer " << n << " holds a non-finite value at element " << i;
    }
}

void save_training_checkpoint(const std::string& path, const Pretrainer& model, const Adam& adam_c,
                              const TrainingMeta& meta) {
  Adam& adam = const_cast<Adam&>(adam_c);  // the state accessors are non-const; nothing is modified
  check_finite(model, "refusing to save " + path);
  SafeTensors st;
  add_module_state(st, model);
  std::vector<std::string> names = trainable_names(model);
  HDSSL_CHECK(names.size() == adam.params().size()) << "Adam holds " << adam.params().size() << " parameters, the model "
                                                    << names.size() << " trainable ones";
  for (size_t i = 0; i < names.size(); ++i) {
    st.add("optimizer.exp_avg." + names[i], adam.exp_avg()[i]);
    st.add("optimizer.exp_avg_sq." + names[i], adam.exp_avg_sq()[i]);
  }
  nlohmann::json opt = {{"type", "Adam"}, {"lr", adam.lr()}, {"step_count", adam.step_count()},
                        {"param_steps", adam.param_steps()}, {"param_names", names}};
  st.metadata = meta.extra;
  st.metadata["format"] = kPretrainFormat;
  st.metadata["format_version"] = std::to_string(kPretrainFormatVersion);
  st.metadata["step"] = std::to_string(meta.step);
  st.metadata["sampler_position"] = std::to_string(meta.sampler_position);
  st.metadata["model"] = meta.model_json;
  st.metadata["data"] = meta.data_json;
  st.metadata["rng"] = meta.rng_json;
  st.metadata["optimizer"] = opt.dump();
  st.metadata["axis_order"] = "N,C,X,Y,Z with x,y,z in RAS after reorientation";
  write_safetensors(path, st);
}

TrainingMeta read_training_meta(const SafeTensors& st, const std::string& path) {
  auto get = [&](const char* k) -> const std::string& {
    auto it = st.metadata.find(k);
    if (it == st.metadata.end()) throw CheckpointError("checkpoint " + path + ": metadata lacks \"" + k + "\"");
    return it->second;
  };
  if (get("format") != kPretrainFormat)
    throw CheckpointError("checkpoint " + path + ": format is \"" + get("format") + "\", not a pretraining checkpoint");
  if (get("format_version") != std::to_string(kPretrainFormatVersion))
    throw CheckpointError("checkpoint " + path + ": format version " + get("format_version") + " (this program reads " +
                          std::to_string(kPretrainFormatVersion) + ")");
  TrainingMeta m;
  try {
    m.step = std::stoll(get("step"));
    m.sampler_position = std::stoull(get("sampler_position"));
  } catch (const std::logic_error&) {
    throw CheckpointError("checkpoint " + path + ": step or sampler_position is not a number");
  }
  m.model_json = get("model");
  m.data_json = get("data");
  m.rng_json = get("rng");
  m.extra = st.metadata;
  return m;
}

namespace {
// The settings that decide the model's tensors, as "name value" pairs, for a by-name comparison.
std::vector<std::pair<std::string, std::string>> architecture_of(const PretrainConfig& c) {
  return {{"arch", c.arch},
          {"base_channels", std::to_string(c.base)},
          {"scales", std::to_string(c.scales)},
          {"blocks", std::to_string(c.blocks)},
          {"balanced", std::to_string(c.balanced)},
          {"proj_width", std::to_string(c.proj_width)},
          {"embed_dim", std::to_string(c.embed_dim)},
          {"restoration", std::to_string(c.restoration)},
          {"restoration_single_conv", std::to_string(c.restoration_single_conv)}};
}

// Refuses a checkpoint written for another architecture, naming each setting that differs.
void check_same_architecture(const std::string& path, const TrainingMeta& meta, const PretrainConfig& model) {
  PretrainConfig saved;
  try {
    saved = PretrainConfig::from_json(meta.model_json);
  } catch (const std::exception& e) {
    throw CheckpointError("checkpoint " + path + ": model config in the metadata is unreadable: " + e.what());
  }
  auto a = architecture_of(saved), b = architecture_of(model);
  std::string diff;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].second != b[i].second)
      diff += (diff.empty() ? "" : ", ") + a[i].first + " " + a[i].second + " (this run: " + b[i].second + ")";
  if (!diff.empty()) throw CheckpointError("checkpoint " + path + ": written for another architecture: " + diff);
}
}  // namespace

TrainingMeta load_training_checkpoint(const std::string& path, Pretrainer& model, Adam& adam) {
  SafeTensors st = read_safetensors(path);
  TrainingMeta meta = read_training_meta(st, path);
  check_same_architecture(path, meta, model.config());
  try {
    load_module_state(model, st, "", true, {"optimizer."});
  } catch (const CheckpointError& e) {
    throw CheckpointError("checkpoint " + path + ": " + e.what());
  }
  std::vector<std::string> names = trainable_names(model);
  nlohmann::json opt;
  try {
    opt = nlohmann::json::parse(st.metadata.at("optimizer"));
  } catch (const std::exception& e) {
    throw CheckpointError("checkpoint " + path + ": optimizer metadata unreadable: " + e.what());
  }
  std::vector<std::string> opt_names;
  int64_t step_count = 0;
  std::vector<int64_t> param_steps;
  try {
    opt_names = opt.at("param_names").get<std::vector<std::string>>();
    step_count = opt.at("step_count").get<int64_t>();
    param_steps = opt.at("param_steps").get<std::vector<int64_t>>();
  } catch (const std::exception& e) {
    throw CheckpointError("checkpoint " + path + ": optimizer metadata unreadable: " + e.what());
  }
  if (opt_names != names)
    throw CheckpointError("checkpoint " + path + ": the optimizer's parameter list differs from the model's "
                          "(a different configuration or frozen set?)");
  if (param_steps.size() != names.size() || step_count < 0)
    throw CheckpointError("checkpoint " + path + ": optimizer metadata: " + std::to_string(param_steps.size()) +
                          " step counters for " + std::to_string(names.size()) + " parameters, step_count " +
                          std::to_string(step_count));
  for (size_t i = 0; i < names.size(); ++i) {
    for (auto [key, vec] : {std::pair{"optimizer.exp_avg.", &adam.exp_avg()}, std::pair{"optimizer.exp_avg_sq.", &adam.exp_avg_sq()}}) {
      const StoredTensor* s = st.find(key + names[i]);
      Tensor& dst = (*vec)[i];
      if (!s) throw CheckpointError("checkpoint " + path + ": missing " + key + names[i]);
      if (s->shape != dst.shape())
        throw CheckpointError("checkpoint " + path + ": " + key + names[i] + " has shape " + shape_str(s->shape));
      dst = to_tensor(*s, dst.dtype(), dst.device());
    }
  }
  adam.set_step_count(step_count);
  adam.param_steps() = param_steps;
  return meta;
}

void save_backbone(const std::string& path, Pretrainer& model, const std::map<std::string, std::string>& meta) {
  check_finite(model.backbone(), "refusing to save " + path);
  SafeTensors st;
  add_module_state(st, model.backbone());
  st.metadata = meta;
  const FPN3dConfig& c = model.backbone().config();
  st.metadata["format"] = "hdssl.backbone";
  st.metadata["format_version"] = "1";
  st.metadata["architecture"] = "FPN3d";
  st.metadata["base_channels"] = std::to_string(c.base);
  st.metadata["num_scales"] = std::to_string(c.scales);
  st.metadata["blocks"] = std::to_string(c.blocks);
  st.metadata["in_channels"] = "1";
  st.metadata["axis_order"] = "N,C,X,Y,Z with x,y,z in RAS after reorientation";
  write_safetensors(path, st);
}

}  // namespace hdssl::models
