// Peak memory of a pretraining run, estimated before anything large is allocated, and the refusal a
// program prints when it does not fit (issue: the paper's defaults on a 24 GB CPU machine were killed by
// the kernel's OOM killer after a minute, without a message).
//
// The estimate counts what one step keeps alive at its peak, which is the start of backward:
//   activations  every op output of both views' graphs: a node keeps its input Variables until backward
//                has run through it, and backward keeps every value until it ends, so all of them are
//                alive at once (per ResBlock 5 tensors of c x voxels; max-pool outputs and int32 indices;
//                the decoder's up / lateral convs and sums; the restoration head; the voxel rows)
//   backward     the gradient being propagated plus its input gradient and a BN temporary at level 0,
//                and the gradients of the skip connections waiting for the encoder
//   parameters   + gradients + Adam's two moments (4 copies), BN running statistics
//   InfoNCE      one block of kTileRows x 2N similarities and the stacked embeddings
//   workspaces   the CPU conv's per-thread column buffers, or cuDNN's workspace on the GPU
//   batches      the loader's prefetched batches, the one being uploaded and the batch uploader's two slots
//                (views, targets, coordinates; on the GPU two pinned staging buffers, and two slots on the device)
//   dataset      the preprocessed volumes held in memory (the caller knows their size after loading)
//   baseline     the process itself (code, OpenBLAS / OpenMP / CUDA runtime buffers)
// On the GPU the model, graph and workspaces live in device memory; the host keeps dataset, batches and
// baseline. Checked against measured peaks in tests/models/test_memory_estimate.cpp (VmHWM on the CPU).
// What is available: available_host_memory() for the host, available_device_memory() for the GPU (the
// device's free memory through the engine's backend, so nothing here includes CUDA headers).
#pragma once
#include <array>
#include <cstdint>
#include <string>

#include "engine/device.h"
#include "models/pretrainer.h"

namespace hdssl::models {

struct MemoryConfig {
  PretrainConfig model;
  int64_t batch_pairs = 10;                    // --batch-pairs (B)
  std::array<int64_t, 3> patch{128, 128, 32};  // --patch
  int64_t voxels_per_pair = 1024;              // --voxels-per-pair (n)
  bool cuda = false;                           // model and graph on the GPU
  int threads = 1;                             // CPU math threads (conv scratch is per thread)
  int prefetch = 2;                            // loader batches in flight
  int64_t dataset_bytes = 0;                   // preprocessed volumes held in host memory
  bool bf16 = false;                           // --precision bf16: activations and their gradients in bfloat16
};

struct MemoryEstimate {
  int64_t activations = 0, backward = 0, parameters = 0, infonce = 0, workspace = 0;  // model side
  int64_t batches = 0, dataset = 0, baseline = 0;                                     // host side
  int64_t host = 0;         // everything in host memory (the process's peak RSS)
  int64_t device = 0;       // everything in GPU memory (0 on the CPU)
  std::string str() const;  // "host 3.2 GiB (activations 2.1 GiB, ...)"
};

MemoryEstimate estimate_pretrain_memory(const MemoryConfig& c);
// Exact parameter count of Pretrainer(c) (tested against Module::parameter_count()).
int64_t pretrain_parameter_count(const PretrainConfig& c);

// Host memory this process may still use: the smallest of MemAvailable (/proc/meminfo), the cgroup limit
// minus its usage (v2 memory.max, or v1 memory.limit_in_bytes) and RLIMIT_AS minus the current VmSize.
// `source` says which one it was. Returns -1 when none could be read.
int64_t available_host_memory(std::string* source = nullptr);

// GPU memory this process may still allocate on `device` (free device memory plus what the CUDA backend's
// caching allocator holds unused); -1 for the CPU, whose memory is the host's.
int64_t available_device_memory(Device device);

// Empty when the estimate fits (with a 10 % margin) in host_available and, for CUDA, device_available;
// otherwise a message with the estimate, what is available, and settings that would fit: the largest
// --batch-pairs, a smaller --patch (divisible by 2^(scales-1)), and --device cuda when on the CPU.
// An amount of -1 is unknown and not checked (both -1: never a refusal).
std::string memory_refusal(const MemoryConfig& c, int64_t host_available, const std::string& host_source,
                           int64_t device_available = -1);

}  // namespace hdssl::models
