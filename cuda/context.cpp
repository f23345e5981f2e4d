#include "cuda/context.h"

#include <memory>

#include "cuda/check.h"

namespace hdssl::cuda {
namespace {
Context* g_ctx = nullptr;  // created by init(), deliberately never destroyed (see backend.cpp)
}

Context::Context(int dev) : device(dev) {
  cudaCheck(cudaSetDevice(device));
  cudaCheck(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device));
  cudaCheck(cudaStreamCreate(&stream));
  cublasCheck(cublasCreate(&cublas));
  cublasCheck(cublasSetStream(cublas, stream));
  cublasCheck(cublasSetPointerMode(cublas, CUBLAS_POINTER_MODE_HOST));
  cublasCheck(cublasSetMathMode(cublas, CUBLAS_DEFAULT_MATH));  // no TF32: exact float32 GEMMs
  cudnnCheck(cudnnCreate(&cudnn));
  cudnnCheck(cudnnSetStream(cudnn, stream));
}

Context::~Context() {
  if (cudnn) cudnnCheckNoThrow(cudnnDestroy(cudnn));
  if (cublas) cublasCheckNoThrow(cublasDestroy(cublas));
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
  cublasCheck(cublasSetMathMode(c.cublas, allow ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
}

void set_conv_exhaustive_search(bool exhaustive) { ctx().conv_exhaustive_search = exhaustive; }

CachingAllocator& allocator() { return ctx().alloc; }

// Called once by init() in backend.cpp.
void create_context(int device) {
  if (!g_ctx) g_ctx = new Context(device);
}

}  // namespace hdssl::cuda
