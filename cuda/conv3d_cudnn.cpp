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
#include "cuda/conv3d_cudnn.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "cuda/context.h"
#include "cuda/cudnn_descriptors.h"

namespace hdssl::cuda {
namespace {

enum class Dir { Fwd, BwdData, BwdFilter };

using Key = std::tuple<int, int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int, bool, bool>;
struct Choice {
  int algo = 0;
  size_t workspace = 0;
  cudnnMathType_t math = CUDNN_FMA_MATH;
};
std::mutex g_mu;
std::map<Key, Choice> g_cache;

// The shapes of one convolution: x [N,Ci,X,Y,Z], w [Co,Ci,k,k,k], y [N,Co,X,Y,Z].
struct ConvShape {
  int64_t n, ci, co, x, y, z, k;
};

ConvShape check_shapes(const Tensor& x, const Tensor& w, const Tensor& y, int pad, const char* what) {
  HDSSL_CHECK(x.dim() == 5 && w.dim() == 5 && y.dim() == 5)
      << what << ": 5D tensors expected, got " << x.describe() << ", " << w.describe() << ", " << y.describe();
  HDSSL_CHECK(x.dtype() == w.dtype() && x.dtype() == y.dtype()) << what << ": dtypes differ";
  HDSSL_CHECK(x.device().is_cuda() && w.device().is_cuda() && y.device().is_cuda()) << what << ": CUDA tensors expected";
  ConvShape s{x.size(0), x.size(1), w.size(0), x.size(2), x.size(3), x.size(4), w.size(2)};
  HDSSL_CHECK(pad >= 0 && s.k == 2 * pad + 1 && w.size(3) == s.k && w.size(4) == s.k)
      << what << ": kernel " << shape_str(w.shape()) << " does not match pad " << pad;
  HDSSL_CHECK(w.size(1) == s.ci) << what << ": weight " << shape_str(w.shape()) << " vs input " << shape_str(x.shape());
  HDSSL_CHECK(y.shape() == Shape({s.n, s.co, s.x, s.y, s.z}))
      << what << ": output " << shape_str(y.shape()) << " expected [" << s.n << "," << s.co << "," << s.x << ","
      << s.y << "," << s.z << "]";
  return s;
}

// As PyTorch does: float32 without TF32 -> FMA kernels only; float32 with TF32, and float64 -> default.
cudnnMathType_t requested_math(DType t) {
  return (t == DType::F32 && !ctx().allow_tf32) ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH;
}

size_t workspace_cap() {
  size_t free_b = 0, total_b = 0;
  cudaCheck(cudaMemGetInfo(&free_b, &total_b));
  return std::min(size_t(1) << 30, free_b / 4);
}

// Picks the fastest successful result of a Find call (results come sorted by time). With FMA requested
// (float32, TF32 off) only FMA results qualify; the winner's math type is set on the descriptor for the
// real call, since cuDNN identifies a kernel by algorithm and math type together.
template <class Perf>
Choice pick(const Perf* perf, int count, size_t cap, cudnnMathType_t requested, const char* what) {
  for (int i = 0; i < count; ++i) {
    if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > cap) continue;
    if (requested == CUDNN_FMA_MATH && perf[i].mathType != CUDNN_FMA_MATH) continue;
    Choice c;
    c.algo = int(perf[i].algo);
    c.workspace = perf[i].memory;
    c.math = perf[i].mathType;
    return c;
  }
  HDSSL_CHECK(false) << what << ": cuDNN found no usable algorithm among " << count << " results"
                     << (requested == CUDNN_FMA_MATH ? " with FMA math (TF32 off)" : "");
  return {};
}

struct Scalars {  // alpha/beta in the type cuDNN expects for the data type
  float f[2];
  double d[2];
  const void* one(DType t) const { return t == DType::F64 ? static_cast<const void*>(&d[0]) : &f[0]; }
  const void* zero(DType t) const { return t == DType::F64 ? static_cast<const void*>(&d[1]) : &f[1]; }
};
const Scalars kS{{1.f, 0.f}, {1.0, 0.0}};

Key make_key(Dir dir, DType t, const ConvShape& s, int pad) {
  return Key(int(dir), int(t), s.n, s.ci, s.co, s.x, s.y, s.z, s.k, pad, ctx().allow_tf32, ctx().conv_exhaustive_search);
}

bool lookup(const Key& key, Choice& c) {
  std::lock_guard<std::mutex> lock(g_mu);
  auto it = g_cache.find(key);
  if (it == g_cache.end()) return false;
  c = it->second;
  return true;
}
void store(const Key& key, const Choice& c) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_cache[key] = c;
}

}  // namespace

size_t conv3d_cached_algorithms() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_cache.size();
}

void conv3d_forward(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, int pad) {
  const ConvShape s = check_shapes(x, w, y, pad, "conv3d_forward");
  Context& c = ctx();
  const DType t = x.dtype();
  TensorDesc xd(t, x.shape()), yd(t, y.shape());
  FilterDesc wd(t, w.shape());
  const cudnnMathType_t math = requested_math(t);
  ConvDesc cd(t, pad, math);
  const Key key = make_key(Dir::Fwd, t, s, pad);
  Choice ch;
  if (!lookup(key, ch)) {
    const size_t cap = workspace_cap();
    size_t ws = 0;
    for (int a = 0; a < CUDNN_CONVOLUTION_FWD_ALGO_COUNT; ++a) {
      size_t b_ = 0;
      if (cudnnGetConvolutionForwardWorkspaceSize(c.cudnn, xd, wd, cd, yd, cudnnConvolutionFwdAlgo_t(a), &b_) ==
              CUDNN_STATUS_SUCCESS && b_ <= cap)
        ws = std::max(ws, b_);
    }
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int count = 0;
    if (c.conv_exhaustive_search) {
      DeviceBuffer buf(ws, /*uncached=*/true);
      cudnnCheck(cudnnFindConvolutionForwardAlgorithmEx(c.cudnn, xd, x.raw(), wd, w.raw(), cd, yd, y.raw(),
                                                        CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &count, perf, buf.get(), ws));
    } else {
      cudnnCheck(cudnnGetConvolutionForwardAlgorithm_v7(c.cudnn, xd, wd, cd, yd, CUDNN_CONVOLUTION_FWD_ALGO_COUNT,
                                                        &count, perf));
    }
    ch = pick(perf, count, cap, math, "conv3d_forward");
    cd.set_math(ch.math);
    size_t need = 0;  // the heuristic's estimate may be low: ask for this algorithm's exact need
    cudnnCheck(cudnnGetConvolutionForwardWorkspaceSize(c.cudnn, xd, wd, cd, yd, cudnnConvolutionFwdAlgo_t(ch.algo),
                                                       &need));
    ch.workspace = std::max(ch.workspace, need);
    store(key, ch);
  }
  cd.set_math(ch.math);
  DeviceBuffer ws(ch.workspace);
  cudnnCheck(cudnnConvolutionForward(c.cudnn, kS.one(t), xd, x.raw(), wd, w.raw(), cd,
                                     cudnnConvolutionFwdAlgo_t(ch.algo), ws.get(), ch.workspace, kS.zero(t), yd,
                                     y.raw()));
  if (b.defined()) {
    HDSSL_CHECK(b.dtype() == t && b.numel() == s.co && b.device().is_cuda())
        << "conv3d_forward: bias " << b.describe() << " for " << s.co << " output channels";
    TensorDesc bd(t, {1, s.co, 1, 1, 1});
    cudnnCheck(cudnnAddTensor(c.cudnn, kS.one(t), bd, b.raw(), kS.one(t), yd, y.raw()));
  }
}

void conv3d_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, int pad) {
  const ConvShape s = check_shapes(dx, w, dy, pad, "conv3d_backward_data");
  Context& c = ctx();
  const DType t = dy.dtype();
  TensorDesc dxd(t, dx.shape()), dyd(t, dy.shape());
  FilterDesc wd(t, w.shape());
  const cudnnMathType_t math = requested_math(t);
  ConvDesc cd(t, pad, math);
  const Key key = make_key(Dir::BwdData, t, s, pad);
  Choice ch;
  if (!lookup(key, ch)) {
    const size_t cap = workspace_cap();
    size_t ws = 0;
    for (int a = 0; a < CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT; ++a) {
      size_t b_ = 0;
      if (cudnnGetConvolutionBackwardDataWorkspaceSize(c.cudnn, wd, dyd, cd, dxd, cudnnConvolutionBwdDataAlgo_t(a),
                                                       &b_) == CUDNN_STATUS_SUCCESS && b_ <= cap)
        ws = std::max(ws, b_);
    }
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    int count = 0;
    if (c.conv_exhaustive_search) {
      DeviceBuffer buf(ws, /*uncached=*/true);
      cudnnCheck(cudnnFindConvolutionBackwardDataAlgorithmEx(c.cudnn, wd, w.raw(), dyd, dy.raw(), cd, dxd, dx.raw(),
                                                             CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &count, perf,
                                                             buf.get(), ws));
    } else {
      cudnnCheck(cudnnGetConvolutionBackwardDataAlgorithm_v7(c.cudnn, wd, dyd, cd, dxd,
                                                             CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &count, perf));
    }
    ch = pick(perf, count, cap, math, "conv3d_backward_data");
    cd.set_math(ch.math);
    size_t need = 0;
    cudnnCheck(cudnnGetConvolutionBackwardDataWorkspaceSize(c.cudnn, wd, dyd, cd, dxd,
                                                            cudnnConvolutionBwdDataAlgo_t(ch.algo), &need));
    ch.workspace = std::max(ch.workspace, need);
    store(key, ch);
  }
  cd.set_math(ch.math);
  DeviceBuffer ws(ch.workspace);
  cudnnCheck(cudnnConvolutionBackwardData(c.cudnn, kS.one(t), wd, w.raw(), dyd, dy.raw(), cd,
                                          cudnnConvolutionBwdDataAlgo_t(ch.algo), ws.get(), ch.workspace, kS.zero(t),
                                          dxd, dx.raw()));
}

void conv3d_backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, int pad) {
  const ConvShape s = check_shapes(x, dw, dy, pad, "conv3d_backward_filter");
  Context& c = ctx();
  const DType t = x.dtype();
  TensorDesc xd(t, x.shape()), dyd(t, dy.shape());
  FilterDesc wd(t, dw.shape());
  const cudnnMathType_t math = requested_math(t);
  ConvDesc cd(t, pad, math);
  const Key key = make_key(Dir::BwdFilter, t, s, pad);
  Choice ch;
  if (!lookup(key, ch)) {
    const size_t cap = workspace_cap();
    size_t ws = 0;
    for (int a = 0; a < CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT; ++a) {
      size_t b_ = 0;
      if (cudnnGetConvolutionBackwardFilterWorkspaceSize(c.cudnn, xd, dyd, cd, wd,
                                                         cudnnConvolutionBwdFilterAlgo_t(a), &b_) ==
              CUDNN_STATUS_SUCCESS && b_ <= cap)
        ws = std::max(ws, b_);
    }
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int count = 0;
    if (c.conv_exhaustive_search) {
      DeviceBuffer buf(ws, /*uncached=*/true);
      cudnnCheck(cudnnFindConvolutionBackwardFilterAlgorithmEx(c.cudnn, xd, x.raw(), dyd, dy.raw(), cd, wd, dw.raw(),
                                                               CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &count, perf,
                                                               buf.get(), ws));
    } else {
      cudnnCheck(cudnnGetConvolutionBackwardFilterAlgorithm_v7(c.cudnn, xd, dyd, cd, wd,
                                                               CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &count, perf));
    }
    ch = pick(perf, count, cap, math, "conv3d_backward_filter");
    cd.set_math(ch.math);
    size_t need = 0;
    cudnnCheck(cudnnGetConvolutionBackwardFilterWorkspaceSize(c.cudnn, xd, dyd, cd, wd,
                                                              cudnnConvolutionBwdFilterAlgo_t(ch.algo), &need));
    ch.workspace = std::max(ch.workspace, need);
    store(key, ch);
  }
  cd.set_math(ch.math);
  DeviceBuffer ws(ch.workspace);
  cudnnCheck(cudnnConvolutionBackwardFilter(c.cudnn, kS.one(t), xd, x.raw(), dyd, dy.raw(), cd,
                                            cudnnConvolutionBwdFilterAlgo_t(ch.algo), ws.get(), ch.workspace,
                                            kS.zero(t), wd, dw.raw()));
}

}  // namespace hdssl::cuda
