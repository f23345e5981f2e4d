// The CUDA StepCapturer (see step_graph.h and engine/step_graph.h for the rules a captured step follows).
//
// begin(): the general cache's free blocks released (cudaFree, before the capture), a private pool of the
// caching allocator for this thread's allocations, the engine's capture flag
// (host reads and writes now throw, naming the call), then cudaStreamBeginCapture on the backend's stream
// in thread-local mode (a potentially unsafe CUDA call from this thread invalidates the capture; other
// threads, such as the batch uploader's, are not affected). Everything the step queues on the stream from
// then on is recorded, not run. end(): cudaStreamEndCapture, cudaGraphInstantiate; the pool stays with the
// graph, and returns to the general cache when the graph is destroyed.
//
// What else the step must not do while captured (each checked where it happens):
//  - cuDNN's algorithm search (cudnnFind*Ex runs convolutions and cudaMallocs its workspace): the eager
//    warm-up steps before the capture fill the algorithm cache, and a cache miss during a capture throws
//    (cuda/conv3d_cudnn.cpp);
//  - cuBLAS allocating its own workspace: the context gives the handle a fixed one (cuda/context.cpp);
//  - cudaFree (it synchronizes): the allocator frees nothing while a pool is open (cuda/allocator.cpp).
#include "cuda/step_graph.h"

#include <memory>

#include "cuda/check.h"
#include "cuda/context.h"
#include "engine/backend.h"
#include "engine/step_graph.h"

namespace hdssl::cuda {
namespace {

class CudaStepGraph final : public StepGraph {
 public:
  // Takes the captured graph and the pool at once, so that a failure in instantiate() (or anything after
  // it) destroys both and releases the pool exactly once.
  CudaStepGraph(cudaGraph_t g, int pool) : graph_(g), pool_(pool) {}
  ~CudaStepGraph() override {
    // Queued replays may still run: the pool's blocks go back to the general cache in stream order, which
    // is safe on the one stream; the executable graph may be destroyed while launched (CUDA frees it when
    // the launch completes).
    if (exec_) cudaCheckNoThrow(cudaGraphExecDestroy(exec_));
    if (graph_) cudaCheckNoThrow(cudaGraphDestroy(graph_));
    ctx().alloc.release_private_pool(pool_);
  }
  void instantiate() {
    cudaCheck(cudaGraphGetNodes(graph_, nullptr, &nodes_));
    const cudaError_t ie = cudaGraphInstantiate(&exec_, graph_, 0);  // CUDA 12+: (exec, graph, flags)
    if (ie != cudaSuccess) {
      exec_ = nullptr;
      (void)cudaGetLastError();
      HDSSL_CHECK(false) << "cudaGraphInstantiate failed: " << cudaGetErrorString(ie);
    }
  }
  void replay() override { cudaCheck(cudaGraphLaunch(exec_, ctx().stream)); }
  size_t nodes() const override { return nodes_; }
  Device device() const override { return Device::cuda(ctx().device); }

 private:
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
  int pool_ = 0;
  size_t nodes_ = 0;
};

class CudaCapturer final : public StepCapturer {
 public:
  explicit CudaCapturer(Device d) : device_(d) {}
  void begin() override {
    Context& c = ctx();
    // The pool never takes blocks from the general cache, and nothing may be cudaFree'd while capturing:
    // without this, the warm-up steps' cached blocks would stay reserved beside the pool's own copy of the
    // step's working set (about twice the eager step's memory), and a capture near the limit would run out.
    // cudaFree waits for the device: once per capture, before it.
    c.alloc.release_cache();
    pool_ = c.alloc.begin_private_pool();
    try {
      set_thread_capture(device_, nullptr, nullptr);  // host reads refused; calls run (into the capture)
      cudaCheck(cudaStreamBeginCapture(c.stream, cudaStreamCaptureModeThreadLocal));
    } catch (...) {
      clear_thread_capture();
      c.alloc.end_private_pool();
      c.alloc.release_private_pool(pool_);
      throw;
    }
    open_ = true;
  }
  std::unique_ptr<StepGraph> end() override {
    Context& c = ctx();
    cudaGraph_t g = nullptr;
    const cudaError_t e = cudaStreamEndCapture(c.stream, &g);
    open_ = false;
    clear_thread_capture();
    c.alloc.end_private_pool();
    if (e != cudaSuccess) {
      if (g) cudaCheckNoThrow(cudaGraphDestroy(g));
      c.alloc.release_private_pool(pool_);
      (void)cudaGetLastError();
      HDSSL_CHECK(false) << "cudaStreamEndCapture failed (" << cudaGetErrorString(e)
                         << "): something in the captured step is not capturable (a synchronizing call, a "
                            "cudaFree, work on another stream)";
    }
    auto graph = std::make_unique<CudaStepGraph>(g, pool_);  // owns g and the pool from here on
    graph->instantiate();
    return graph;
  }
  void abort() noexcept override {
    Context& c = ctx();
    if (open_) {
      cudaGraph_t g = nullptr;
      (void)cudaStreamEndCapture(c.stream, &g);  // ends it whatever its state (invalidated or not)
      if (g) (void)cudaGraphDestroy(g);
      (void)cudaGetLastError();
      open_ = false;
    }
    clear_thread_capture();
    c.alloc.end_private_pool();
    c.alloc.release_private_pool(pool_);
  }

 private:
  Device device_;
  int pool_ = 0;
  bool open_ = false;
};

std::unique_ptr<StepCapturer> make_capturer(Device d) { return std::make_unique<CudaCapturer>(d); }

}  // namespace

void register_step_capture() { register_step_capturer(DeviceKind::CUDA, &make_capturer); }

}  // namespace hdssl::cuda
