// Error checks for the CUDA runtime, cuDNN and cuBLAS that say where: cudaCheck(expr) throws hdssl::Error
// with file:line, the failing expression and the library's own message. The *_NOTHROW variants only print
// (for destructors and shutdown paths, where throwing would terminate the program).
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <cstdio>
#include <sstream>

#include "engine/check.h"

namespace hdssl::cuda::detail {

inline const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_(unknown)";
  }
}

[[noreturn]] inline void throw_error(const char* lib, const char* expr, const char* msg, const char* file, int line) {
  std::ostringstream os;
  os << file << ":" << line << ": " << lib << " call failed: " << expr << ": " << msg;
  throw ::hdssl::Error(os.str());
}
inline void print_error(const char* lib, const char* expr, const char* msg, const char* file, int line) {
  std::fprintf(stderr, "%s:%d: %s call failed (ignored): %s: %s\n", file, line, lib, expr, msg);
}

}  // namespace hdssl::cuda::detail

#define cudaCheck(expr)                                                                                  \
  do {                                                                                                   \
    cudaError_t hdssl_e_ = (expr);                                                                       \
    if (hdssl_e_ != cudaSuccess)                                                                         \
      ::hdssl::cuda::detail::throw_error("CUDA", #expr, cudaGetErrorString(hdssl_e_), __FILE__, __LINE__); \
  } while (0)

#define cudnnCheck(expr)                                                                                    \
  do {                                                                                                      \
    cudnnStatus_t hdssl_s_ = (expr);                                                                        \
    if (hdssl_s_ != CUDNN_STATUS_SUCCESS)                                                                   \
      ::hdssl::cuda::detail::throw_error("cuDNN", #expr, cudnnGetErrorString(hdssl_s_), __FILE__, __LINE__); \
  } while (0)

#define cublasCheck(expr)                                                                                  \
  do {                                                                                                     \
    cublasStatus_t hdssl_s_ = (expr);                                                                      \
    if (hdssl_s_ != CUBLAS_STATUS_SUCCESS)                                                                 \
      ::hdssl::cuda::detail::throw_error("cuBLAS", #expr, ::hdssl::cuda::detail::cublas_status_name(hdssl_s_), \
                                         __FILE__, __LINE__);                                              \
  } while (0)

// Print-only variants for destructors.
#define cudaCheckNoThrow(expr)                                                                           \
  do {                                                                                                   \
    cudaError_t hdssl_e_ = (expr);                                                                       \
    if (hdssl_e_ != cudaSuccess && hdssl_e_ != cudaErrorCudartUnloading)                                 \
      ::hdssl::cuda::detail::print_error("CUDA", #expr, cudaGetErrorString(hdssl_e_), __FILE__, __LINE__); \
  } while (0)
#define cudnnCheckNoThrow(expr)                                                                             \
  do {                                                                                                      \
    cudnnStatus_t hdssl_s_ = (expr);                                                                        \
    if (hdssl_s_ != CUDNN_STATUS_SUCCESS)                                                                   \
      ::hdssl::cuda::detail::print_error("cuDNN", #expr, cudnnGetErrorString(hdssl_s_), __FILE__, __LINE__); \
  } while (0)
#define cublasCheckNoThrow(expr)                                                                           \
  do {                                                                                                     \
    cublasStatus_t hdssl_s_ = (expr);                                                                      \
    if (hdssl_s_ != CUBLAS_STATUS_SUCCESS)                                                                 \
      ::hdssl::cuda::detail::print_error("cuBLAS", #expr, ::hdssl::cuda::detail::cublas_status_name(hdssl_s_), \
                                         __FILE__, __LINE__);                                              \
  } while (0)

// After a kernel launch: catches bad launch configurations at once (asynchronous faults surface later,
// at the next synchronizing call, also through cudaCheck).
#define cudaCheckLaunch() cudaCheck(cudaGetLastError())
