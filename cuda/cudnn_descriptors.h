// RAII wrappers for the cuDNN descriptors the 3D convolution needs: each owns one descriptor, sets it in
// the constructor (throwing on error) and destroys it in the destructor (print-only on error).
#pragma once
#include <cudnn.h>

#include <cstdint>
#include <vector>

#include "cuda/check.h"
#include "engine/dtype.h"

namespace hdssl::cuda {

// The storage type of tensors and filters.
inline cudnnDataType_t cudnn_dtype(DType t) {
  switch (t) {
    case DType::F32: return CUDNN_DATA_FLOAT;
    case DType::F64: return CUDNN_DATA_DOUBLE;
    case DType::BF16: return CUDNN_DATA_BFLOAT16;
    default: break;
  }
  HDSSL_CHECK(false) << "cuDNN: float32, float64 or bfloat16 expected, got " << dtype_name(t);
  return CUDNN_DATA_FLOAT;
}
// The convolution's compute (accumulation) type: the data type, except float32 for bfloat16 data -
// cuDNN's PSEUDO_BFLOAT16_CONFIG, the only bfloat16 configuration the legacy convolution API documents
// for cudnnConvolutionForward/BackwardData/BackwardFilter (there is no "true" bf16 configuration, no bf16
// accumulation). (PyTorch's legacy cuDNN path passes the data type, BFLOAT16, as compute type; we keep
// to the documented table.)
inline cudnnDataType_t cudnn_compute_dtype(DType t) {
  return t == DType::BF16 ? CUDNN_DATA_FLOAT : cudnn_dtype(t);
}

// A fully packed N-d tensor (row-major strides), 5D for NCXYZ volumes, [1,C,1,1,1] for a bias.
class TensorDesc {
 public:
  TensorDesc(DType t, const std::vector<int64_t>& dims) {
    cudnnCheck(cudnnCreateTensorDescriptor(&d_));
    std::vector<int> dim(dims.size()), stride(dims.size());
    int64_t acc = 1;
    for (size_t i = dims.size(); i-- > 0;) {
      HDSSL_CHECK(dims[i] > 0 && dims[i] < (int64_t(1) << 31)) << "cuDNN tensor dimension out of range";
      dim[i] = int(dims[i]);
      stride[i] = int(acc);
      acc *= dims[i];
    }
    cudnnCheck(cudnnSetTensorNdDescriptor(d_, cudnn_dtype(t), int(dims.size()), dim.data(), stride.data()));
  }
  ~TensorDesc() { cudnnCheckNoThrow(cudnnDestroyTensorDescriptor(d_)); }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
  operator cudnnTensorDescriptor_t() const { return d_; }

 private:
  cudnnTensorDescriptor_t d_ = nullptr;
};

// Convolution weights [Co, Ci, k, k, k].
class FilterDesc {
 public:
  FilterDesc(DType t, const std::vector<int64_t>& dims) {
    cudnnCheck(cudnnCreateFilterDescriptor(&d_));
    std::vector<int> dim(dims.begin(), dims.end());
    cudnnCheck(cudnnSetFilterNdDescriptor(d_, cudnn_dtype(t), CUDNN_TENSOR_NCHW, int(dim.size()), dim.data()));
  }
  ~FilterDesc() { cudnnCheckNoThrow(cudnnDestroyFilterDescriptor(d_)); }
  FilterDesc(const FilterDesc&) = delete;
  FilterDesc& operator=(const FilterDesc&) = delete;
  operator cudnnFilterDescriptor_t() const { return d_; }

 private:
  cudnnFilterDescriptor_t d_ = nullptr;
};

// 3D cross-correlation, stride 1, dilation 1, symmetric zero padding; compute type = data type (float32
// for bfloat16 data: cudnn_compute_dtype).
class ConvDesc {
 public:
  ConvDesc(DType t, int pad, cudnnMathType_t math) {
    cudnnCheck(cudnnCreateConvolutionDescriptor(&d_));
    const int p[3] = {pad, pad, pad}, s[3] = {1, 1, 1}, dil[3] = {1, 1, 1};
    cudnnCheck(cudnnSetConvolutionNdDescriptor(d_, 3, p, s, dil, CUDNN_CROSS_CORRELATION, cudnn_compute_dtype(t)));
    cudnnCheck(cudnnSetConvolutionMathType(d_, math));
  }
  ~ConvDesc() { cudnnCheckNoThrow(cudnnDestroyConvolutionDescriptor(d_)); }
  ConvDesc(const ConvDesc&) = delete;
  ConvDesc& operator=(const ConvDesc&) = delete;
  operator cudnnConvolutionDescriptor_t() const { return d_; }
  void set_math(cudnnMathType_t math) { cudnnCheck(cudnnSetConvolutionMathType(d_, math)); }

 private:
  cudnnConvolutionDescriptor_t d_ = nullptr;
};

}  // namespace hdssl::cuda
