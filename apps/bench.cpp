// bench: times the heavy pieces of hdssl on one device and reports medians (and, on CUDA, peak memory).
//
//   ./bench [--device auto|cpu|cuda] [--what conv,step,step_upload] [--runs 10] [--warmup 3] [--tf32]
//           [--conv-heuristic] [--precision fp32|bf16] [--cuda-graph] [--json FILE]
//           conv:  [--conv-shape N,C,X,Y,Z] [--conv-out C] [--kernel 3|1]
//           step:  [--arch ours|vox2vec] [--base-channels B] [--scales S] [--pairs 10] [--patch 128,128,32]
//                  [--voxels 1024]
//           [--threads T]   (CPU math threads; default: OMP_NUM_THREADS, else every core)
//
// (a) conv: one 3D convolution forward (with bias) + backward-data + backward-filter + bias gradient of
//     a configurable shape (default on CUDA: both views of the paper's batch at level 0, 20 x 32 x 128 x
//     128 x 32 -> 32; on the CPU the engine micro-benchmark's 2 x 16 x 32 x 32 x 16 -> 16).
// (b) step: one full pretraining step of the paper's network at the paper's size (time_pretrain_step):
//     models::PretrainStep::run(), the very step ./pretrain runs (forward of both views, backward,
//     gradient norm, non-finite checks, clipping, Adam) - on synthetic inputs (random patches and random
//     voxel coordinates; the work does not depend on the values).
// (c) step_upload: the same step, each iteration also taking its batch from the batch uploader and putting
//     the next one from host memory, as ./pretrain does (engine/batch_uploader.h; on CUDA the copy runs on
//     its own stream while the step computes): the difference to (b) is the upload's cost that is not hidden.
// Every timed iteration ends with a device synchronize, so a time is the whole iteration. The median
// (and minimum) is over --runs iterations after --warmup untimed ones (the first CUDA iterations choose
// cuDNN algorithms and fill the caching allocator). TF32 is off unless --tf32. cpu_ms is the median process
// CPU time of an iteration, all threads together: on a shared machine it moves less with the load.
// --cuda-graph: the step rows capture the step once (after two eager warm-up steps, inside --warmup) and
// replay it (docs/pretraining-step.md section 9); the detail column says so, with the captured size.
// --precision bf16: the conv row runs on bfloat16 tensors, the step row under the autocast policy
// (docs/mixed-precision.md); the table's "prec" column says which.
// On the CPU each row's table is followed by the per-op profile of its timed iterations (engine/profile.h,
// milliseconds and calls per iteration; its clock reads around each backend call cost well under 1%).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iomanip>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "apps/common/device_setup.h"
#include "autograd/optim.h"
#include "engine/backend.h"
#include "engine/batch_uploader.h"
#include "engine/profile.h"
#include "engine/random.h"
#include "engine/tensor.h"
#include "apps/common/settings.h"
#include "models/pretrain_step.h"
#include "models/upload_inputs.h"
#include <nlohmann/json.hpp>
#ifdef HDSSL_HAVE_CUDA
#include "cuda/allocator.h"
#include "cuda/backend.h"
#include "cuda/context.h"
#endif

using namespace hdssl;

namespace {

struct Result {
  std::string name, detail;
  std::string precision = "fp32";
  bool available = true;
  std::string why;           // the error when the row could not run (e.g. out of memory)
  double median_s = 0, min_s = 0;
  double cpu_median_s = 0;   // process CPU time per iteration, all threads (steadier than wall time on a busy host)
  double flops = 0;          // per iteration, 0 when unknown
  double peak_gib = -1;      // CUDA: peak bytes in use by tensors and workspaces during the timed runs
  double reserved_gib = -1;  // CUDA: peak bytes obtained from cudaMalloc
  int64_t timed_mallocs = -1;  // CUDA: cudaMalloc calls during the timed runs (0 once the cache is warm)
  std::string profile;       // CPU: the per-op profile of the timed runs, per iteration
};

// "N,C,X,Y,Z" -> sizes, each >= 1; anything else is a UsageError naming the flag.
Shape parse_shape(const std::string& s, size_t n, const char* what) {
  Shape out;
  std::stringstream ss(s);
  for (std::string part; std::getline(ss, part, ',');) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(part, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != part.size() || part.empty() || v < 1)
      throw app::UsageError(std::string(what) + " " + s + ": '" + part + "' is not a size >= 1");
    out.push_back(v);
  }
  if (out.size() != n) throw app::UsageError(std::string(what) + " " + s + ": expected " + std::to_string(n) + " comma-separated sizes");
  return out;
}

Tensor random_tensor(const Shape& s, Rng& rng, double lo, double hi, Device d) {
  std::vector<float> v(size_t(numel(s)));
  for (float& x : v) x = float(rng.uniform(lo, hi));
  return Tensor::from_vector(v, s, d);
}

// Runs `iteration` warmup + runs times (each ending with a synchronize) and fills the timing fields.
void time_iterations(Device device, int warmup, int runs, const std::function<void()>& iteration, Result& r) {
  Backend& b = backend(device);
  for (int i = 0; i < warmup; ++i) iteration();
  b.synchronize();
#ifdef HDSSL_HAVE_CUDA
  int64_t mallocs0 = 0;
  if (device.is_cuda()) {
    cuda::reset_peak_memory();
    mallocs0 = cuda::allocator_stats().num_cuda_malloc;
  }
#endif
  const bool profiled = !device.is_cuda();  // CUDA calls are asynchronous: the profile would time launches
  if (profiled) {
    profile::reset();
    profile::enable(true);
  }
  auto cpu_now = [] {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
  };
  std::vector<double> t, cpu;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = cpu_now();
    iteration();
    b.synchronize();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    cpu.push_back(cpu_now() - c0);
  }
  std::sort(cpu.begin(), cpu.end());
  r.cpu_median_s = cpu[cpu.size() / 2];
  if (profiled) {
    profile::enable(false);
    if (!profile::rows().empty()) r.profile = profile::table(runs);
  }
  std::sort(t.begin(), t.end());
  r.median_s = t[t.size() / 2];
  r.min_s = t.front();
#ifdef HDSSL_HAVE_CUDA
  if (device.is_cuda()) {
    const cuda::AllocatorStats s = cuda::allocator_stats();
    r.peak_gib = double(s.peak_bytes_in_use) / double(1ull << 30);
    r.reserved_gib = double(s.peak_bytes_reserved) / double(1ull << 30);
    r.timed_mallocs = s.num_cuda_malloc - mallocs0;
  }
#endif
}

// (a) conv3d forward + backward on any device.
Result time_conv(Device device, const Shape& xs, int64_t co, int k, int warmup, int runs, Precision prec) {
  Result r;
  r.name = "conv3d_fwd_bwd";
  r.precision = precision_name(prec);
  const DType dt = prec == Precision::BF16 ? DType::BF16 : DType::F32;
  std::ostringstream os;
  os << shape_str(xs) << " -> " << co << ", " << k << "x" << k << "x" << k << ", " << dtype_name(dt);
  r.detail = os.str();
  Rng rng(1);
  const Shape ws{co, xs[1], k, k, k}, ys{xs[0], co, xs[2], xs[3], xs[4]};
  Tensor x = random_tensor(xs, rng, -1, 1, device).to(dt), w = random_tensor(ws, rng, -0.1, 0.1, device).to(dt);
  Tensor b = random_tensor({co}, rng, -0.1, 0.1, device).to(dt), dy = random_tensor(ys, rng, -1, 1, device).to(dt);
  Tensor y = Tensor::empty(ys, dt, device), dx = Tensor::empty(xs, dt, device);
  Tensor dw = Tensor::empty(ws, dt, device), db = Tensor::empty({co}, dt, device);
  Conv3dArgs a;
  a.pad = k / 2;
  time_iterations(device, warmup, runs, [&] {
    Backend& be = backend(device);  // asked each time: with the profile on, backend() hands out its wrapper
    be.conv3d_forward(x, w, b, y, a);
    be.conv3d_backward_data(dy, w, dx, a);
    be.conv3d_backward_filter(x, dy, dw, a);
    be.channel_sum(dy, db);
  }, r);
  r.flops = 3.0 * 2.0 * double(xs[0] * xs[2] * xs[3] * xs[4]) * double(co * xs[1] * k * k * k);
  return r;
}

// (b) ======================== time_pretrain_step ========================
// One full pretraining step, models::PretrainStep::run() with ./pretrain's default settings (lr 3e-4,
// clip 1.0), none of the timed steps a log step: no host read inside a step (the clip factor stays on the
// device), as in ./pretrain between its --log-every steps. base / scales > 0 replace the architecture's own.
// With `upload` (--what step_upload), every iteration also takes its batch from the batch uploader and puts
// the next one, as ./pretrain does (engine/batch_uploader.h: on CUDA a pinned copy on a copy stream that
// overlaps the step), from two host batches used in turn: the time then includes whatever of the upload
// does not overlap the step.
Result time_pretrain_step(Device device, const std::string& arch, int base, int scales, int64_t pairs,
                          const Shape& patch, int64_t voxels, int warmup, int runs, Precision prec,
                          bool upload = false, bool graph = false) {
  Result r;
  r.name = "pretrain_step_" + arch + (upload ? "_upload" : "");
  r.precision = precision_name(prec);
  std::ostringstream os;
  os << pairs << " pairs of " << patch[0] << "x" << patch[1] << "x" << patch[2] << ", " << voxels
     << " voxels/pair, forward+backward+Adam, "
     << (prec == Precision::BF16 ? "bf16 autocast, float32 weights" : "float32");
  Rng rng(7);
  models::PretrainConfig mc = arch == "vox2vec" ? models::PretrainConfig::vox2vec() : models::PretrainConfig::ours();
  if (base > 0) mc.base = base;
  if (scales > 0) mc.scales = scales;
  models::Pretrainer model(mc, rng, {DType::F32, Device::cpu()});
  model.to(device);
  model.train();
  models::StepSettings ss;
  ss.log_every = int64_t(1) << 40;  // never reached: no step of the timing reads its loss or norm back
  ss.precision = prec;
  ss.graph = graph;  // --cuda-graph: warm-up steps eager, then the captured step replayed (needs --warmup >= 3)
  models::PretrainStep step(model, ss);
  os << ", base " << mc.base << ", " << mc.scales << " scales, " << model.parameter_count() << " parameters";
  r.detail = os.str();

  const Shape vs{pairs, 1, patch[0], patch[1], patch[2]};
  auto batch = [&](Device d) {
    auto coords = [&] {
      std::vector<int32_t> c(size_t(pairs * voxels * 3));
      for (size_t i = 0; i < c.size(); ++i) c[i] = int32_t(rng.randint(0, patch[i % 3]));
      return Tensor::from_vector(c, {pairs, voxels, 3}, d);
    };
    models::PretrainInputs in;
    in.view_a = random_tensor(vs, rng, 0, 1, d);
    in.view_b = random_tensor(vs, rng, 0, 1, d);
    in.target_a = random_tensor(vs, rng, 0, 1, d);
    in.target_b = random_tensor(vs, rng, 0, 1, d);
    in.coords_a = coords();
    in.coords_b = coords();
    return in;
  };

  int64_t n = 0;
  if (!upload) {
    const models::PretrainInputs in = batch(device);
    time_iterations(device, warmup, runs, [&] { step.run(in, ++n); }, r);
  } else {
    const models::PretrainInputs host[2] = {batch(Device::cpu()), batch(Device::cpu())};
    std::unique_ptr<BatchUploader> up = make_batch_uploader(device);
    up->put(models::input_tensors(host[0]));
    time_iterations(device, warmup, runs, [&] {
      const models::PretrainInputs in = models::inputs_from_tensors(up->take());
      up->put(models::input_tensors(host[(n + 1) % 2]));
      step.run(in, ++n);
    }, r);
    const BatchUploader::Stats us = up->stats();
    os << "; batch of " << std::fixed << std::setprecision(1)
       << double(4 * numel(vs) * 4 + 2 * pairs * voxels * 3 * 4) / (1 << 20) << " MiB uploaded per step, "
       << us.serialized << " of " << us.batches << " copies not overlapped, " << us.host_waits
       << " host waits for staging";
    r.detail = os.str();
  }
  if (graph)
    r.detail += step.captured() ? "; captured step replayed (" + std::to_string(step.captured_calls()) +
                                      (device.is_cpu() ? " recorded calls)" : " graph nodes)")
                                : std::string("; --cuda-graph: not captured yet (fewer than 3 steps run)");
  // FLOPs of one step at the paper's sizes, as counted by scripts/torch_reference_bench.py
  // (27.1 and 7.4 TFLOP: docs/method.md section 8); unknown for other sizes.
  const bool paper_net = base <= 0 && scales <= 0;
  if (paper_net && pairs == 10 && patch == Shape({128, 128, 32}) && voxels == 1024)
    r.flops = arch == "vox2vec" ? 7367861207040.0 : 27082453155840.0;
  return r;
}
// ====================== end of time_pretrain_step ======================

void print_table(const std::vector<Result>& rows, const std::string& device_line) {
  std::printf("\nbench on %s\n", device_line.c_str());
  std::printf("%-24s %5s %12s %12s %10s %10s %10s %10s %8s  %s\n", "what", "prec", "median_ms", "min_ms", "cpu_ms",
              "TFLOP/s", "peak_GiB", "resv_GiB", "mallocs", "detail");
  for (const Result& r : rows) {
    if (!r.available) {
      std::printf("%-24s %5s %12s  %s\n", r.name.c_str(), r.precision.c_str(), "n/a", ("failed: " + r.why).c_str());
      continue;
    }
    char tf[32] = "-", pk[32] = "-", rs[32] = "-", ml[32] = "-";
    if (r.flops > 0) std::snprintf(tf, sizeof tf, "%.2f", r.flops / r.median_s / 1e12);
    if (r.peak_gib >= 0) std::snprintf(pk, sizeof pk, "%.2f", r.peak_gib);
    if (r.reserved_gib >= 0) std::snprintf(rs, sizeof rs, "%.2f", r.reserved_gib);
    if (r.timed_mallocs >= 0) std::snprintf(ml, sizeof ml, "%lld", static_cast<long long>(r.timed_mallocs));
    std::printf("%-24s %5s %12.2f %12.2f %10.2f %10s %10s %10s %8s  %s\n", r.name.c_str(), r.precision.c_str(),
                r.median_s * 1e3, r.min_s * 1e3, r.cpu_median_s * 1e3, tf, pk, rs, ml, r.detail.c_str());
  }
  for (const Result& r : rows)
    if (r.available && !r.profile.empty())
      std::printf("\nprofile of %s (per timed iteration):\n%s", r.name.c_str(), r.profile.c_str());
}

void write_json(const std::string& path, const std::vector<Result>& rows, const std::string& device_line) {
  nlohmann::json j;
  j["device"] = device_line;
  j["rows"] = nlohmann::json::array();
  for (const Result& r : rows) {
    nlohmann::json o{{"name", r.name}, {"precision", r.precision}, {"detail", r.detail}, {"available", r.available}};
    if (!r.available) o["error"] = r.why;
    else
      o.update({{"median_s", r.median_s}, {"min_s", r.min_s}, {"cpu_median_s", r.cpu_median_s}, {"flops", r.flops},
                {"peak_gib", r.peak_gib}, {"reserved_gib", r.reserved_gib}, {"timed_mallocs", r.timed_mallocs}});
    j["rows"].push_back(o);
  }
  std::ofstream(path) << j.dump(1) << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Time conv3d forward+backward and one full pretraining step on a device"};
  std::string device_arg = app::kDefaultDevice, what = "conv,step", conv_shape, patch_arg = "128,128,32", arch = "ours",
              json_out, precision_arg = "fp32";
  int64_t conv_out = 0, pairs = 10, voxels = 1024;
  int kernel = 3, runs = 10, warmup = 3, base = 0, scales = 0, threads = 0;
  bool tf32 = false, conv_heuristic = false, deterministic = false, cuda_graph = false;
  app::SettingsTable t(app);  // bench saves nothing: the table gives the flags their ranges
  using K = app::Kind;
  t.add("--device", "device", device_arg, "auto | cpu | cuda | cuda:N (auto: the first GPU when there is one)", K::NotSaved);
  t.add("--what", "what", what, "comma-separated: conv, step, step_upload (the step plus its batch's upload)",
        K::NotSaved);
  t.add("--runs", "runs", runs, "timed iterations", K::NotSaved).at_least(1);
  t.add("--warmup", "warmup", warmup, "untimed iterations first", K::NotSaved).at_least(0);
  t.add("--tf32", "tf32", tf32, "allow TF32 tensor cores for float32 convolutions and GEMMs (CUDA)", K::NotSaved);
  t.add("--deterministic", "deterministic", deterministic,
        "deterministic cuDNN algorithms and no float atomics (the cost of ./pretrain --deterministic)", K::NotSaved);
  t.add("--conv-heuristic", "conv_heuristic", conv_heuristic,
        "CUDA: take cuDNN's heuristic algorithm ranking instead of timing every algorithm once per shape", K::NotSaved);
  t.add("--precision", "precision", precision_arg,
        "fp32 | bf16 (conv: bfloat16 tensors; step: the autocast policy, docs/mixed-precision.md)", K::NotSaved)
      .one_of({"fp32", "bf16"});
  t.add("--cuda-graph", "cuda_graph", cuda_graph,
        "step rows: capture the step after 2 eager warm-up steps and replay it (a CUDA graph; on the CPU the "
        "recorder of engine/step_graph.h, which shows the host code's per-call cost)", K::NotSaved);
  t.add("--json", "json", json_out, "also write the results to this JSON file", K::NotSaved);
  t.add("--conv-shape", "conv_shape", conv_shape,
        "conv input N,C,X,Y,Z (default: 20,32,128,128,32 on CUDA, 2,16,32,32,16 on CPU)", K::NotSaved);
  t.add("--conv-out", "conv_out", conv_out, "conv output channels (0: the input's)", K::NotSaved).at_least(0);
  t.add("--kernel", "kernel", kernel, "conv kernel size, 3 or 1", K::NotSaved).at_least(1);
  t.add("--arch", "arch", arch, "ours | vox2vec", K::NotSaved).one_of({"ours", "vox2vec"});
  t.add("--base-channels", "base_channels", base, "channels of pyramid level 0 (default: 32 ours, 16 vox2vec)",
        K::NotSaved).at_least(1);
  t.add("--scales", "scales", scales, "pyramid levels (default: 5 ours, 6 vox2vec)", K::NotSaved).at_least(1);
  t.add("--pairs", "pairs", pairs, "pairs of patches per step", K::NotSaved).at_least(1);
  t.add("--patch", "patch", patch_arg, "patch size X,Y,Z", K::NotSaved);
  t.add("--voxels", "voxels", voxels, "sampled voxels per pair", K::NotSaved).at_least(1);
  t.add("--threads", "threads", threads, "CPU threads for the math (0: as OMP_NUM_THREADS, else every core)",
        K::NotSaved).at_least(0);
  if (int rc = app::parse_command_line(app, argc, argv); rc >= 0) return rc;
  try {
    t.check_ranges();
    if (kernel != 1 && kernel != 3) throw app::UsageError("--kernel " + std::to_string(kernel) + ": must be 1 or 3");
  } catch (const app::UsageError& e) {
    std::fprintf(stderr, "bench: error: %s\n", e.what());
    return 2;
  }

  try {
    Device device;
    try {
      device = app::open_device(device_arg);
    } catch (const Error& e) {  // an unknown name, or a GPU asked for where none is usable
      std::fprintf(stderr, "bench: error: %s\n", e.what());
      return 2;
    }
    std::printf("%s\n", app::device_line(device_arg, device).c_str());
    // Without --threads the math threads stay as OMP_NUM_THREADS (or the OpenMP default) sets them.
    std::string device_line = "cpu";
    if (threads > 0) device_line += ", " + std::to_string(app::set_math_threads(threads)) + " math threads";
    hdssl::set_deterministic(deterministic);
    if (device.is_cuda()) {
#ifdef HDSSL_HAVE_CUDA
      cuda::set_allow_tf32(tf32);
      cuda::set_conv_exhaustive_search(!conv_heuristic);
      device_line = cuda::device_summary() + (tf32 ? ", TF32 on" : ", TF32 off") +
                    (conv_heuristic ? ", cuDNN heuristic algorithms" : ", cuDNN algorithms timed (Find)") +
                    (deterministic ? ", deterministic" : "");
#endif
    }
    if (conv_shape.empty()) conv_shape = device.is_cuda() ? "20,32,128,128,32" : "2,16,32,32,16";
    const Shape xs = parse_shape(conv_shape, 5, "--conv-shape"), patch = parse_shape(patch_arg, 3, "--patch");
    if (conv_out <= 0) conv_out = xs[1];
    const Precision prec = parse_precision(precision_arg);

    std::vector<Result> rows;
    std::stringstream ws(what);
    for (std::string item; std::getline(ws, item, ',');) {
      if (item == "conv") {
        rows.push_back(time_conv(device, xs, conv_out, kernel, warmup, runs, prec));
      } else if (item == "step" || item == "step_upload") {
        const bool upload = item == "step_upload";
        try {
          rows.push_back(
              time_pretrain_step(device, arch, base, scales, pairs, patch, voxels, warmup, runs, prec, upload,
                                 cuda_graph));
        } catch (const std::exception& e) {  // e.g. out of memory: report it as the row's finding
          Result r;
          r.name = "pretrain_step_" + arch + (upload ? "_upload" : "");
          r.precision = precision_name(prec);
          r.available = false;
          r.why = e.what();
          rows.push_back(r);
        }
      } else {
        throw app::UsageError("--what: unknown item '" + item + "' (conv, step, step_upload)");
      }
      std::printf("bench: %s done\n", rows.back().name.c_str());
      std::fflush(stdout);
      if (!json_out.empty()) write_json(json_out, rows, device_line);  // after every row: survives a kill
    }
    print_table(rows, device_line);
  } catch (const app::UsageError& e) {
    std::fprintf(stderr, "bench: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
