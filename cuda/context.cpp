#include "cuda/context.h"

#include <memory>

#include "cuda/check.h"

namespace hdssl::cuda {
namespace {
Context* g_ctx = nullptr;  // created by init(), deliberately never destroyed (see backend.cpp)

// The handle's math mode: TF32 or not, and always CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION. Without
// that flag a bfloat16 GEMM (cublasGemmEx 16BF in, 16BF out, CUBLAS_COMPUTE_32F) may split K and add the
// partial sums in the *output* type, rounding each to bf16 (PyTorch sets the same flag unless
// allow_bf16_reduced_precision_reduction); with it every reduction stays in float32 and C is rounded once
// (cuda/matmul_cublas.cpp). The flag changes nothing for float32 and float64 outputs.
cublasMath_t math_mode(bool allow_tf32) {
  return cublasMath_t((allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH) |
                      CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION);
}
}

Context::Context(int dev) : device(dev) {
  cudaCheck(cudaSetDevice(device));
  cudaCheck(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device));
  // Non-blocking: no implicit ordering with the legacy default stream, which nothing here uses (every
  // kernel, copy and library call names this stream). A blocking stream would turn any legacy-stream call,
  // from any thread or library, into a failure of a captured step ("operation would make the legacy stream
  // depend on a capturing blocking stream"); PyTorch's streams are non-blocking for the same reason.
  cudaCheck(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cublasCheck(cublasCreate(&cublas));
  cublasCheck(cublasSetStream(cublas, stream));
  cublasCheck(cublasSetPointerMode(cublas, CUBLAS_POINTER_MODE_HOST));
  cublasCheck(cublasSetMathMode(cublas, math_mode(false)));  // no TF32: exact float32 GEMMs
  // A fixed cuBLAS workspace (NVIDIA's recommended size: 32 MiB from Hopper on, 4 MiB before), so that
  // cuBLAS never allocates one itself inside a captured step (cuda/step_graph.cpp). Not from the caching
  // allocator: it lives as long as the context.
  int major = 0;
  cudaCheck(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  cublas_workspace_bytes = size_t(major >= 9 ? 32 : 4) << 20;
  cudaCheck(cudaMalloc(&cublas_workspace, cublas_workspace_bytes));
  cublasCheck(cublasSetWorkspace(cublas, cublas_workspace, cublas_workspace_bytes));
  cudnnCheck(cudnnCreate(&cudnn));
  cudnnCheck(cudnnSetStream(cudnn, stream));
}

Context::~Context() {
  if (cudnn) cudnnCheckNoThrow(cudnnDestroy(cudnn));
  if (cublas) cublasCheckNoThrow(cublasDestroy(cublas));
  if (cublas_workspace) cudaCheckNoThrow(cudaFree(cublas_workspace));
  if (stream) cudaCheckNoThrow(cudaStreamDestroy(stream));
}

Context& ctx() {
  HDSSL_CHECK(g_ctx != nullptr) << "the CUDA backend is not initialised: call hdssl::cuda::init() first";
  return *g_ctx;
}
bool has_context() { return g_ctx != nullptr; }

void set_allow_tf32(bool allow) {
  Context& c = ctx();
  c.allow_tf32 = allow;
  cublasCheck(cublasSetMathMode(c.cublas, math_mode(allow)));
}

void set_conv_exhaustive_search(bool exhaustive) { ctx().conv_exhaustive_search = exhaustive; }

CachingAllocator& allocator() { return ctx().alloc; }

// Called once by init() in backend.cpp.
void create_context(int device) {
  if (!g_ctx) g_ctx = new Context(device);
}

}  // namespace hdssl::cuda
