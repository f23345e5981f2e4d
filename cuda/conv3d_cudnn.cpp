// 3D convolution through cuDNN's legacy convolution API (still the simplest way to run a plain NCDHW conv).
//
// The algorithm for each (direction, dtype, shape, TF32 setting) is chosen once with cudnnFind*Ex, which
// times every algorithm on the caller's real buffers, and cached; later calls only look it up.
// (set_conv_exhaustive_search(false) takes cuDNN's heuristic ranking instead: no timing, instant.) The
// workspace comes from the caching allocator for the duration of one call. Find is given a workspace as
// large as the hungriest algorithm that stays under a cap (1 GiB, or a quarter of the free memory), taken
// outside the cache and freed right after the search so it does not stay reserved.
//
// TF32: with allow_tf32 off, float32 descriptors use CUDNN_FMA_MATH, which restricts cuDNN to plain FMA
// kernels (exact float32, what the parity tests compare against the CPU); with it on (and for float64)
// CUDNN_DEFAULT_MATH, and the math type that Find reports for the winner is used.
//
// Fallback: the cache keeps every usable result of the search, fastest first. If the first fails when
// it runs (cuDNN returns an error status, e.g. NOT_SUPPORTED or EXECUTION_FAILED for this shape), the
// next is tried, the failed ones are dropped from the cache, and a line on stderr says so; only when all
// fail is it an error, listing each algorithm's status.
//
// bfloat16 (the mixed-precision path): x, w, y descriptors are CUDNN_DATA_BFLOAT16, the convolution's
// compute type is CUDNN_DATA_FLOAT (cuDNN's PSEUDO_BFLOAT16_CONFIG: bf16 storage, float32 accumulation,
// the one bf16 configuration the legacy API documents, for 2D and 3D alike) and the math
// type is CUDNN_TENSOR_OP_MATH (tensor cores; needs sm_80 or newer). Which algorithms take bf16 NCDHW
// depends on the cuDNN version and the shape; we do not list them but let Find (or the heuristic) rank
// what works, exactly as for float32, so an unsupported algorithm simply never enters the ranking, and
// the run-time fallback above covers one that fails anyway. The cache key holds the dtype, so bf16 and
// float32 convolutions of one shape keep separate choices; --deterministic filters bf16 results as it
// does float32 ones. The bias add of a bf16 convolution is a small kernel (cuda/kernels/elementwise.cu:
// add_channel_bias, float arithmetic, rounded once more to bf16) instead of cudnnAddTensor.
//
// The three directions differ only in which cuDNN functions they call and in which of x, w, y is the
// output; a small traits struct per direction (Fwd, BwdData, BwdFilter) names those calls, and the choice
// (cache lookup, workspace sizing, search, ranking, exact workspaces) and the run with its fallback are
// written once, in choose() and convolve(). Shapes and dtypes arrive checked by the engine's dispatch
// (engine/dispatch.cpp).
#include "cuda/conv3d_cudnn.h"

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <map>
#include <mutex>
#include <sstream>
#include <tuple>
#include <vector>

#include "cuda/context.h"
#include "cuda/cudnn_descriptors.h"
#include "cuda/kernels/kernels.h"
#include "engine/backend.h"

namespace hdssl::cuda {
namespace {

enum class Dir { Fwd, BwdData, BwdFilter };

using Key =
    std::tuple<int, int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int, bool, bool, bool>;
struct Choice {
  int algo = 0;
  size_t workspace = 0;
  cudnnMathType_t math = CUDNN_FMA_MATH;
};
using Ranked = std::vector<Choice>;  // usable algorithms, fastest first; the first runs while it works
std::mutex g_mu;
std::map<Key, Ranked> g_cache;

// The shapes of one convolution: x [N,Ci,X,Y,Z], w [Co,Ci,k,k,k], y [N,Co,X,Y,Z].
struct ConvShape {
  int64_t n, ci, co, x, y, z, k;
};

// One call's descriptors and device buffers, whatever the direction: x, w, y as in the forward
// convolution (in backward-data x is dx, the output; in backward-filter w is dw, the output).
struct Conv {
  Conv(const Tensor& x_, const Tensor& w_, const Tensor& y_, int pad_, cudnnMathType_t math)
      : t(x_.dtype()),
        pad(pad_),
        s{x_.size(0), x_.size(1), w_.size(0), x_.size(2), x_.size(3), x_.size(4), w_.size(2)},
        xd(t, x_.shape()),
        yd(t, y_.shape()),
        wd(t, w_.shape()),
        cd(t, pad_, math),
        x(x_.raw()),
        w(w_.raw()),
        y(y_.raw()) {}
  DType t;
  int pad;
  ConvShape s;
  TensorDesc xd, yd;
  FilterDesc wd;
  ConvDesc cd;
  void *x, *w, *y;
};

// The cuDNN calls of each direction.
struct Fwd {
  static constexpr Dir kDir = Dir::Fwd;
  static constexpr const char* kName = "conv3d_forward";
  static constexpr int kCount = CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
  using Algo = cudnnConvolutionFwdAlgo_t;
  using Perf = cudnnConvolutionFwdAlgoPerf_t;
  static cudnnStatus_t workspace(cudnnHandle_t h, const Conv& c, int algo, size_t* bytes) {
    return cudnnGetConvolutionForwardWorkspaceSize(h, c.xd, c.wd, c.cd, c.yd, Algo(algo), bytes);
  }
  static cudnnStatus_t find(cudnnHandle_t h, const Conv& c, Perf* perf, int* count, void* ws, size_t ws_bytes) {
    return cudnnFindConvolutionForwardAlgorithmEx(h, c.xd, c.x, c.wd, c.w, c.cd, c.yd, c.y, kCount, count, perf, ws,
                                                  ws_bytes);
  }
  static cudnnStatus_t heuristic(cudnnHandle_t h, const Conv& c, Perf* perf, int* count) {
    return cudnnGetConvolutionForwardAlgorithm_v7(h, c.xd, c.wd, c.cd, c.yd, kCount, count, perf);
  }
  static cudnnStatus_t run(cudnnHandle_t h, const Conv& c, int algo, void* ws, size_t ws_bytes, const void* one,
                           const void* zero) {
    return cudnnConvolutionForward(h, one, c.xd, c.x, c.wd, c.w, c.cd, Algo(algo), ws, ws_bytes, zero, c.yd, c.y);
  }
};
struct BwdData {
  static constexpr Dir kDir = Dir::BwdData;
  static constexpr const char* kName = "conv3d_backward_data";
  static constexpr int kCount = CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
  using Algo = cudnnConvolutionBwdDataAlgo_t;
  using Perf = cudnnConvolutionBwdDataAlgoPerf_t;
  static cudnnStatus_t workspace(cudnnHandle_t h, const Conv& c, int algo, size_t* bytes) {
    return cudnnGetConvolutionBackwardDataWorkspaceSize(h, c.wd, c.yd, c.cd, c.xd, Algo(algo), bytes);
  }
  static cudnnStatus_t find(cudnnHandle_t h, const Conv& c, Perf* perf, int* count, void* ws, size_t ws_bytes) {
    return cudnnFindConvolutionBackwardDataAlgorithmEx(h, c.wd, c.w, c.yd, c.y, c.cd, c.xd, c.x, kCount, count, perf,
                                                       ws, ws_bytes);
  }
  static cudnnStatus_t heuristic(cudnnHandle_t h, const Conv& c, Perf* perf, int* count) {
    return cudnnGetConvolutionBackwardDataAlgorithm_v7(h, c.wd, c.yd, c.cd, c.xd, kCount, count, perf);
  }
  static cudnnStatus_t run(cudnnHandle_t h, const Conv& c, int algo, void* ws, size_t ws_bytes, const void* one,
                           const void* zero) {
    return cudnnConvolutionBackwardData(h, one, c.wd, c.w, c.yd, c.y, c.cd, Algo(algo), ws, ws_bytes, zero, c.xd,
                                        c.x);
  }
};
struct BwdFilter {
  static constexpr Dir kDir = Dir::BwdFilter;
  static constexpr const char* kName = "conv3d_backward_filter";
  static constexpr int kCount = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
  using Algo = cudnnConvolutionBwdFilterAlgo_t;
  using Perf = cudnnConvolutionBwdFilterAlgoPerf_t;
  static cudnnStatus_t workspace(cudnnHandle_t h, const Conv& c, int algo, size_t* bytes) {
    return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, c.xd, c.yd, c.cd, c.wd, Algo(algo), bytes);
  }
  static cudnnStatus_t find(cudnnHandle_t h, const Conv& c, Perf* perf, int* count, void* ws, size_t ws_bytes) {
    return cudnnFindConvolutionBackwardFilterAlgorithmEx(h, c.xd, c.x, c.yd, c.y, c.cd, c.wd, c.w, kCount, count,
                                                         perf, ws, ws_bytes);
  }
  static cudnnStatus_t heuristic(cudnnHandle_t h, const Conv& c, Perf* perf, int* count) {
    return cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, c.xd, c.yd, c.cd, c.wd, kCount, count, perf);
  }
  static cudnnStatus_t run(cudnnHandle_t h, const Conv& c, int algo, void* ws, size_t ws_bytes, const void* one,
                           const void* zero) {
    return cudnnConvolutionBackwardFilter(h, one, c.xd, c.x, c.yd, c.y, c.cd, Algo(algo), ws, ws_bytes, zero, c.wd,
                                          c.w);
  }
};

// As PyTorch does: float32 without TF32 -> FMA kernels only; float32 with TF32, and float64 -> default.
// bfloat16 -> tensor cores permitted explicitly (float32 accumulation; PyTorch's legacy path leaves bf16
// at the default math type).
cudnnMathType_t requested_math(DType t) {
  if (t == DType::BF16) return CUDNN_TENSOR_OP_MATH;
  return (t == DType::F32 && !ctx().allow_tf32) ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH;
}

size_t workspace_cap() {
  size_t free_b = 0, total_b = 0;
  cudaCheck(cudaMemGetInfo(&free_b, &total_b));
  return std::min(size_t(1) << 30, free_b / 4);
}

// The successful results of a Find call (sorted by time) within the workspace cap, fastest first. With
// FMA requested (float32, TF32 off) only FMA results qualify; each result's math type is set on the
// descriptor for its real call, since cuDNN identifies a kernel by algorithm and math type together.
template <class Perf>
Ranked rank(const Perf* perf, int count, size_t cap, cudnnMathType_t requested, const char* what) {
  Ranked r;
  for (int i = 0; i < count; ++i) {
    if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > cap) continue;
    if (requested == CUDNN_FMA_MATH && perf[i].mathType != CUDNN_FMA_MATH) continue;
    if (deterministic() && perf[i].determinism != CUDNN_DETERMINISTIC) continue;  // --deterministic
    Choice c;
    c.algo = int(perf[i].algo);
    c.workspace = perf[i].memory;
    c.math = perf[i].mathType;
    r.push_back(c);
  }
  HDSSL_CHECK(!r.empty()) << what << ": cuDNN found no usable algorithm among " << count << " results"
                          << (requested == CUDNN_FMA_MATH ? " with FMA math (TF32 off)" : "")
                          << (deterministic() ? " that is deterministic (--deterministic)" : "");
  return r;
}

struct Scalars {  // alpha/beta in the type cuDNN expects for the data type (float for float32 and bf16)
  float f[2];
  double d[2];
  const void* one(DType t) const { return t == DType::F64 ? static_cast<const void*>(&d[0]) : &f[0]; }
  const void* zero(DType t) const { return t == DType::F64 ? static_cast<const void*>(&d[1]) : &f[1]; }
};
const Scalars kS{{1.f, 0.f}, {1.0, 0.0}};

Key make_key(Dir dir, DType t, const ConvShape& s, int pad) {
  return Key(int(dir), int(t), s.n, s.ci, s.co, s.x, s.y, s.z, s.k, pad, ctx().allow_tf32,
             ctx().conv_exhaustive_search, deterministic());
}

bool lookup(const Key& key, Ranked& r) {
  std::lock_guard<std::mutex> lock(g_mu);
  auto it = g_cache.find(key);
  if (it == g_cache.end()) return false;
  r = it->second;
  return true;
}
void store(const Key& key, const Ranked& r) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_cache[key] = r;
}

// The algorithms for this call: from the cache, or searched now (timed on the call's own buffers, or
// cuDNN's heuristic ranking), ranked, and cached with the exact workspace each needs.
template <class Op>
Ranked choose(Conv& cv, const Key& key, cudnnMathType_t math) {
  Ranked ranked;
  if (lookup(key, ranked)) return ranked;
  Context& c = ctx();
  // The search runs convolutions and cudaMallocs its workspace: never inside a captured step (a CUDA graph,
  // cuda/step_graph.cpp). Eager warm-up steps of every shape come first and fill the cache.
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  cudaCheck(cudaStreamIsCapturing(c.stream, &capturing));
  HDSSL_CHECK(capturing == cudaStreamCaptureStatusNone)
      << Op::kName << ": no cuDNN algorithm chosen yet for this shape while the step is being captured (a CUDA "
      << "graph): run eager warm-up steps of the same shapes first (StepSettings::graph_warmup)";
  const size_t cap = workspace_cap();
  size_t ws = 0;  // the largest workspace any algorithm needs, within the cap
  for (int a = 0; a < Op::kCount; ++a) {
    size_t bytes = 0;
    if (Op::workspace(c.cudnn, cv, a, &bytes) == CUDNN_STATUS_SUCCESS && bytes <= cap) ws = std::max(ws, bytes);
  }
  typename Op::Perf perf[Op::kCount];
  int count = 0;
  if (c.conv_exhaustive_search) {
    DeviceBuffer buf(ws, /*uncached=*/true);
    cudnnCheck(Op::find(c.cudnn, cv, perf, &count, buf.get(), ws));
  } else {
    cudnnCheck(Op::heuristic(c.cudnn, cv, perf, &count));
  }
  cudnnStatus_t last = CUDNN_STATUS_SUCCESS;
  for (Choice ch : rank(perf, count, cap, math, Op::kName)) {
    cv.cd.set_math(ch.math);
    size_t need = 0;  // the heuristic's estimate may be low: ask for this algorithm's exact need
    last = Op::workspace(c.cudnn, cv, ch.algo, &need);
    if (last != CUDNN_STATUS_SUCCESS) continue;  // cannot be sized, so cannot be run
    ch.workspace = std::max(ch.workspace, need);
    ranked.push_back(ch);
  }
  HDSSL_CHECK(!ranked.empty()) << Op::kName << ": cuDNN could not size the workspace of any usable algorithm ("
                               << cudnnGetErrorString(last) << ")";
  store(key, ranked);
  return ranked;
}

// One convolution in direction Op: the cached (or newly chosen) algorithms in order until one runs.
template <class Op>
void convolve(const Tensor& x, const Tensor& w, const Tensor& y, int pad) {
  const cudnnMathType_t math = requested_math(x.dtype());
  Conv cv(x, w, y, pad, math);
  const Key key = make_key(Op::kDir, cv.t, cv.s, cv.pad);
  const Ranked ranked = choose<Op>(cv, key, math);
  std::ostringstream failed;
  for (size_t i = 0; i < ranked.size(); ++i) {
    const Choice& ch = ranked[i];
    cv.cd.set_math(ch.math);
    DeviceBuffer ws(ch.workspace);
    const cudnnStatus_t st = Op::run(ctx().cudnn, cv, ch.algo, ws.get(), ch.workspace, kS.one(cv.t), kS.zero(cv.t));
    if (st == CUDNN_STATUS_SUCCESS) {
      if (i > 0) {  // the faster ones failed for this shape: never try them again
        store(key, Ranked(ranked.begin() + std::ptrdiff_t(i), ranked.end()));
        std::fprintf(stderr, "hdssl: %s: cuDNN algorithm(s) %s failed at run time; algorithm %d used instead\n",
                     Op::kName, failed.str().c_str(), ch.algo);
      }
      return;
    }
    failed << (i ? ", " : "") << ch.algo << " (" << cudnnGetErrorString(st) << ")";
  }
  HDSSL_CHECK(false) << Op::kName << ": every usable cuDNN algorithm failed at run time: " << failed.str();
}

}  // namespace

size_t conv3d_cached_algorithms() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_cache.size();
}

void conv3d_forward(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, int pad) {
  convolve<Fwd>(x, w, y, pad);
  if (b.defined() && x.dtype() == DType::BF16) {
    kernels::add_channel_bias<bf16>(y.data<bf16>(), b.data<bf16>(), y.size(0), y.size(1),
                                    y.numel() / std::max<int64_t>(1, y.size(0) * y.size(1)));
  } else if (b.defined()) {
    const DType t = x.dtype();
    TensorDesc bd(t, {1, w.size(0), 1, 1, 1}), yd(t, y.shape());
    cudnnCheck(cudnnAddTensor(ctx().cudnn, kS.one(t), bd, b.raw(), kS.one(t), yd, y.raw()));
  }
}

void conv3d_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, int pad) {
  convolve<BwdData>(dx, w, dy, pad);
}

void conv3d_backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, int pad) {
  convolve<BwdFilter>(x, dw, dy, pad);
}

}  // namespace hdssl::cuda
