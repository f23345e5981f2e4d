// Training checkpoints: everything a pretraining run needs to continue exactly where it stopped.
//
// One .safetensors file holds the Pretrainer's parameters and buffers under their state-dict names
// ("backbone.first_conv.weight", ...), Adam's moments as "optimizer.exp_avg.<name>" and
// "optimizer.exp_avg_sq.<name>", and in its metadata: format name and version, the model config, the
// data/preprocessing config, the step, Adam's counters, every RNG state and the sampler position. On
// the CPU, restoring these gives bit-identical continuation. Non-finite weights are never written.
#pragma once
#include <map>
#include <string>

#include "autograd/optim.h"
#include "models/checkpoint.h"
#include "models/pretrainer.h"

namespace hdssl::models {

constexpr const char* kPretrainFormat = "hdssl.pretrain";
constexpr int kPretrainFormatVersion = 1;

struct TrainingMeta {
  int64_t step = 0;                    // completed optimizer steps
  uint64_t sampler_position = 0;       // the loader's next batch number
  std::string model_json;              // PretrainConfig::to_json()
  std::string data_json;               // patch, batch, augmentation, preprocessing (JSON text)
  std::string rng_json;                // every RNG state (JSON text)
  std::map<std::string, std::string> extra;  // anything else worth keeping (program version, ...)
};

// Throws hdssl::Error naming the first parameter or buffer holding NaN or Inf.
void check_finite(const Module& m, const std::string& what);

// Atomic write (see checkpoint.h). Adam's parameters must be model.parameters() in that order.
void save_training_checkpoint(const std::string& path, const Pretrainer& model, const Adam& adam,
                              const TrainingMeta& meta);
// Reads the metadata only (to build the model with the right config before loading).
TrainingMeta read_training_meta(const SafeTensors& st, const std::string& path);
// Loads weights, buffers and Adam state strictly; throws CheckpointError naming the problem.
TrainingMeta load_training_checkpoint(const std::string& path, Pretrainer& model, Adam& adam);

// The backbone alone, names exactly those of the reference PyTorch FPN3d state dict (no prefix), with
// metadata: format "hdssl.backbone", base channels, scales, blocks, axis order, preprocessing.
void save_backbone(const std::string& path, Pretrainer& model, const std::map<std::string, std::string>& meta);

}  // namespace hdssl::models
