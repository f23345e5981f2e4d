// Peak-memory estimate of one pretraining step, available memory, and the refusal message.
// See memory_estimate.h for what is counted; the element counts follow models/fpn3d.cpp and
// autograd/functions (which tensors each op's backward closure keeps).
#include "models/memory_estimate.h"

#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "engine/backend.h"

namespace hdssl::models {
namespace {

constexpr int64_t kFloat = 4;          // float32 parameters, Adam state, InfoNCE; activations under fp32
constexpr int64_t kBf16 = 2;           // activations and their gradients under --precision bf16
constexpr int64_t kIndex = 4;          // int32 max-pool indices and coordinates
constexpr int64_t kInfoNCERows = 256;  // rows of the similarity matrix per block (engine/cpu/losses.cpp)
constexpr int64_t kMiB = int64_t(1) << 20;

int64_t conv_params(int64_t ci, int64_t co, int64_t k) { return co * ci * k * k * k + co; }
int64_t bn_params(int64_t c) { return 2 * c; }
int64_t resblock_params(int64_t c) { return 2 * bn_params(c) + 2 * conv_params(c, c, 3); }

// Voxels of pyramid level i for one sample: ceil(patch / 2^i) per axis.
int64_t level_voxels(const std::array<int64_t, 3>& p, int i) {
  int64_t v = 1;
  for (int64_t d : p) v *= (d + (int64_t(1) << i) - 1) >> i;
  return v;
}

// Bytes the autograd graph holds for one view of one sample, activations of `act` bytes each. Every node
// keeps its input Variables (autograd/variable.cpp), so every op output lives until backward ends, not
// only what the backward closures capture: per ResBlock 5 tensors (BN+ReLU, conv, BN+ReLU, conv, sum;
// batch norm and ReLU are one fused op, ag::batchnorm_relu).
int64_t graph_bytes_per_sample(const MemoryConfig& c, int64_t act) {
  const PretrainConfig& m = c.model;
  const int L = m.scales - 1;
  auto ch = [&](int i) { return int64_t(m.base) << i; };
  auto V = [&](int i) { return level_voxels(c.patch, i); };
  const int64_t per_block = 5;
  int64_t e = ch(0) * V(0);  // stem output
  int64_t indices = 0;
  for (int i = 0; i < L; ++i) {
    e += m.blocks * per_block * ch(i) * V(i);
    e += ch(i) * V(i + 1);        // max-pool output
    indices += ch(i) * V(i + 1);  // and its int32 indices
    e += ch(i + 1) * V(i + 1);    // 1x1x1 conv to 2c
  }
  e += m.blocks * per_block * ch(L) * V(L);
  for (int l = L - 1; l >= 0; --l)  // up conv (coarse), upsampled, lateral conv, sum, then the blocks
    e += ch(l) * V(l + 1) + 3 * ch(l) * V(l) + m.blocks * per_block * ch(l) * V(l);
  if (m.restoration) e += (m.restoration_single_conv ? 1 : 2 * std::max(1, m.base / 2) + 1) * V(0);
  return act * e + kIndex * indices;
}

// Elements of the voxel rows (gather, projections, head) for one view, all samples.
int64_t row_elements(const MemoryConfig& c) {
  const PretrainConfig& m = c.model;
  int64_t sum_c = 0;
  for (int i = 0; i < m.scales; ++i) sum_c += int64_t(m.base) << i;
  const int64_t d = m.voxel_dim(), rows = c.batch_pairs * c.voxels_per_pair;
  // gathered rows per scale, their projections, the concat, fc and fused BN+ReLU twice, fc, L2 norm
  return rows * (sum_c + (m.balanced ? d : 0) + 5 * d + 2 * m.embed_dim);
}

std::string gib(int64_t b) {
  char s[32];
  std::snprintf(s, sizeof s, "%.2f GiB", double(b) / double(int64_t(1) << 30));
  return s;
}

// -1: unknown, not checked.
bool fits_host(const MemoryEstimate& e, int64_t host) { return host < 0 || e.host * 11 / 10 <= host; }
bool fits_device(const MemoryEstimate& e, int64_t device) { return device < 0 || e.device * 11 / 10 <= device; }
bool fits(const MemoryEstimate& e, int64_t host, int64_t device) {
  return fits_host(e, host) && fits_device(e, device);
}

int64_t read_int_file(const std::string& path) {
  std::ifstream f(path);
  std::string s;
  if (!(f >> s) || s == "max") return -1;
  try {
    return std::stoll(s);
  } catch (const std::exception&) {
    return -1;
  }
}

// "Key:   123 kB" from a /proc file, in bytes; -1 when absent.
int64_t proc_kb(const std::string& path, const std::string& key) {
  std::ifstream f(path);
  for (std::string line; std::getline(f, line);)
    if (line.compare(0, key.size() + 1, key + ":") == 0) {
      std::istringstream is(line.substr(key.size() + 1));
      int64_t kb = -1;
      is >> kb;
      return kb < 0 ? -1 : kb * 1024;
    }
  return -1;
}

}  // namespace

int64_t pretrain_parameter_count(const PretrainConfig& m) {
  const int L = m.scales - 1;
  auto ch = [&](int i) { return int64_t(m.base) << i; };
  int64_t p = conv_params(1, ch(0), 3);
  for (int i = 0; i < L; ++i) p += m.blocks * resblock_params(ch(i)) + conv_params(ch(i), 2 * ch(i), 1);
  p += m.blocks * resblock_params(ch(L));
  for (int l = 0; l < L; ++l)
    p += conv_params(2 * ch(l), ch(l), 1) + conv_params(ch(l), ch(l), 1) + m.blocks * resblock_params(ch(l));
  if (m.balanced)
    for (int i = 0; i < m.scales; ++i) p += conv_params(ch(i), m.proj_width, 1);
  const int64_t d = m.voxel_dim();
  p += 2 * (d * d + d) + 2 * bn_params(d) + d * m.embed_dim + m.embed_dim;
  if (m.restoration) {
    if (m.restoration_single_conv) {
      p += conv_params(m.base, 1, 1);
    } else {
      const int64_t hidden = std::max(1, m.base / 2);
      p += conv_params(m.base, hidden, 3) + bn_params(hidden) + conv_params(hidden, 1, 1);
    }
  }
  return p;
}

MemoryEstimate estimate_pretrain_memory(const MemoryConfig& c) {
  MemoryEstimate e;
  const PretrainConfig& m = c.model;
  const int64_t B = c.batch_pairs, V0 = level_voxels(c.patch, 0), N = B * c.voxels_per_pair;
  // Under bf16 the graph keeps bf16 activations and the bf16 copy of every weight a convolution or a
  // linear layer used (autograd/autocast.h); the voxel rows after the projection are float32 either way,
  // counted at 4 bytes.
  const int64_t act = c.bf16 ? kBf16 : kFloat;
  e.activations = 2 * (B * graph_bytes_per_sample(c, act) + kFloat * row_elements(c));
  if (c.bf16) e.activations += kBf16 * pretrain_parameter_count(m);
  // Backward at level 0: the incoming gradient, the input gradient and a BN/conv temporary; the skip
  // gradients of every level wait for the encoder.
  int64_t skips = 0;
  for (int i = 0; i < m.scales - 1; ++i) skips += (int64_t(m.base) << i) * level_voxels(c.patch, i);
  e.backward = act * B * (3 * int64_t(m.base) * V0 + skips);
  // The CPU computes bf16 in float32 on widened copies (engine/bf16_widening.h): the largest op's inputs
  // and outputs (a level-0 ResBlock conv: 2 x base x V0 per sample) exist once more in float32, briefly.
  if (c.bf16 && !c.cuda) e.backward += kFloat * B * 3 * int64_t(m.base) * V0;
  // Parameters, gradients, Adam's two moments; BN running statistics are < 1 % and ride along.
  e.parameters = 4 * kFloat * pretrain_parameter_count(m);
  e.infonce = kFloat * (std::min<int64_t>(kInfoNCERows, 2 * N) * 2 * N + 4 * 2 * N * m.embed_dim);
  if (c.cuda)
    e.workspace = 64 * kMiB + e.activations / 20;  // cuDNN's chosen algorithms; the caching allocator's rounding
  else e.workspace = int64_t(std::max(1, c.threads)) * 4 * kMiB;  // conv column buffers (1 MiB tiles), per thread
  // The loader's prefetched batches, the one being handed to the batch uploader and the uploader's two
  // slots (engine/batch_uploader.h): on the CPU the slots are host memory, on the GPU the host holds two
  // pinned staging buffers instead and the two slots are device memory.
  const int64_t batch = 4 * kFloat * B * V0 + 2 * kIndex * N * 3;
  e.batches = int64_t(c.prefetch + 3) * batch;
  e.dataset = c.dataset_bytes;
  e.baseline = c.cuda ? 1024 * kMiB : 48 * kMiB + int64_t(std::max(1, c.threads)) * 2 * kMiB;
  const int64_t model_side = e.activations + e.backward + e.parameters + e.infonce + e.workspace;
  const int64_t host_side = e.batches + e.dataset + e.baseline;
  e.host = host_side + (c.cuda ? 0 : model_side);
  e.device = c.cuda ? model_side + 2 * batch : 0;
  return e;
}

std::string MemoryEstimate::str() const {
  std::ostringstream os;
  if (device > 0) os << "GPU " << gib(device) << ", host " << gib(host);
  else os << "host " << gib(host);
  os << " (activations " << gib(activations) << ", backward " << gib(backward) << ", parameters+gradients+Adam "
     << gib(parameters) << ", InfoNCE " << gib(infonce) << ", workspaces " << gib(workspace) << ", batches "
     << gib(batches) << ", dataset " << gib(dataset) << ", process " << gib(baseline) << ")";
  return os.str();
}

int64_t available_host_memory(std::string* source) {
  int64_t best = -1;
  std::string which;
  auto consider = [&](int64_t v, const std::string& name) {
    if (v >= 0 && (best < 0 || v < best)) {
      best = v;
      which = name;
    }
  };
  consider(proc_kb("/proc/meminfo", "MemAvailable"), "MemAvailable in /proc/meminfo");
  const int64_t max2 = read_int_file("/sys/fs/cgroup/memory.max");
  if (max2 >= 0)
    consider(max2 - std::max<int64_t>(0, read_int_file("/sys/fs/cgroup/memory.current")),
             "the cgroup limit (memory.max)");
  const int64_t max1 = read_int_file("/sys/fs/cgroup/memory/memory.limit_in_bytes");
  if (max1 >= 0 && max1 < (int64_t(1) << 60))
    consider(max1 - std::max<int64_t>(0, read_int_file("/sys/fs/cgroup/memory/memory.usage_in_bytes")),
             "the cgroup limit (memory.limit_in_bytes)");
  rlimit rl{};
  if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    consider(int64_t(rl.rlim_cur) - std::max<int64_t>(0, proc_kb("/proc/self/status", "VmSize")),
             "RLIMIT_AS (ulimit -v)");
  if (source) *source = which;
  return best;
}

int64_t available_device_memory(Device device) {
  return device.is_cuda() ? backend(device).free_memory() : -1;
}

std::string memory_refusal(const MemoryConfig& c, int64_t host_available, const std::string& host_source,
                           int64_t device_available) {
  const MemoryEstimate e = estimate_pretrain_memory(c);
  const int64_t dev = c.cuda ? device_available : -1;
  if (fits(e, host_available, dev)) return "";
  std::ostringstream os;
  os << "not enough memory for this configuration: it needs about " << e.str() << " at its peak, but ";
  const bool device_short = !fits_device(e, dev), host_short = !fits_host(e, host_available);
  if (device_short) os << "the GPU has " << gib(dev) << " free" << (host_short ? " and " : "");
  if (host_short) os << "only " << gib(host_available) << " is available (" << host_source << ")";
  os << ". Settings that would fit:";
  bool any = false;
  for (int64_t b = c.batch_pairs - 1; b >= 1; --b) {
    MemoryConfig t = c;
    t.batch_pairs = b;
    if (fits(estimate_pretrain_memory(t), host_available, dev)) {
      os << " --batch-pairs " << b << ";";
      any = true;
      break;
    }
  }
  // Smaller patches: halve the largest axis at a time, keeping it divisible by 2^(scales-1).
  const int64_t unit = int64_t(1) << std::max(0, c.model.scales - 1);
  MemoryConfig t = c;
  for (;;) {
    auto it = std::max_element(t.patch.begin(), t.patch.end());
    const int64_t next = (*it / 2) / unit * unit;
    if (next < unit || next == *it) break;
    *it = next;
    if (fits(estimate_pretrain_memory(t), host_available, dev)) {
      os << " --patch " << t.patch[0] << " " << t.patch[1] << " " << t.patch[2] << ";";
      any = true;
      break;
    }
  }
  if (!c.cuda) {
    MemoryConfig g = c;
    g.cuda = true;
    const MemoryEstimate ge = estimate_pretrain_memory(g);
    if (fits_host(ge, host_available)) {
      os << " --device cuda (a GPU with " << gib(ge.device * 11 / 10) << " free);";
      any = true;
    }
  }
  if (!any)
    os << " none found by reducing --batch-pairs or --patch alone (is the dataset too large for this machine?);";
  std::string s = os.str();
  s.back() = '.';
  return s;
}

}  // namespace hdssl::models
