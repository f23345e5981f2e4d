// TEMPORARY: throwing stubs so the engine links while the conv/pool/norm/gather engineer implements these.
// Delete each stub as its real kernel lands; delete this file when empty.
#include "engine/cpu/cpu_backend.h"

namespace hdssl {

void CpuBackend::conv3d_forward(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, const Conv3dArgs& a) { throw Error("CPU conv3d_forward: not implemented yet"); }
void CpuBackend::conv3d_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv3dArgs& a) { throw Error("CPU conv3d_backward_data: not implemented yet"); }
void CpuBackend::conv3d_backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, const Conv3dArgs& a) { throw Error("CPU conv3d_backward_filter: not implemented yet"); }
void CpuBackend::maxpool2_forward(const Tensor& x, Tensor& y, Tensor& idx) { throw Error("CPU maxpool2_forward: not implemented yet"); }
void CpuBackend::maxpool2_backward(const Tensor& dy, const Tensor& idx, Tensor& dx) { throw Error("CPU maxpool2_backward: not implemented yet"); }
void CpuBackend::upsample2_forward(const Tensor& x, Tensor& y) { throw Error("CPU upsample2_forward: not implemented yet"); }
void CpuBackend::upsample2_backward(const Tensor& dy, Tensor& dx) { throw Error("CPU upsample2_backward: not implemented yet"); }
void CpuBackend::crop_forward(const Tensor& x, Tensor& y, const int64_t offset[3]) { throw Error("CPU crop_forward: not implemented yet"); }
void CpuBackend::crop_backward(const Tensor& dy, Tensor& dx, const int64_t offset[3]) { throw Error("CPU crop_backward: not implemented yet"); }
void CpuBackend::copy_channels(const Tensor& src, Tensor& dst, int64_t c0, bool reverse) { throw Error("CPU copy_channels: not implemented yet"); }
void CpuBackend::batchnorm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& y, Tensor& save_mean, Tensor& save_invstd, Tensor& running_mean, Tensor& running_var, const BatchNormArgs& a) { throw Error("CPU batchnorm_forward_train: not implemented yet"); }
void CpuBackend::batchnorm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean, const Tensor& running_var, Tensor& y, const BatchNormArgs& a) { throw Error("CPU batchnorm_forward_eval: not implemented yet"); }
void CpuBackend::batchnorm_backward(const Tensor& x, const Tensor& dy, const Tensor& gamma, const Tensor& save_mean, const Tensor& save_invstd, Tensor& dx, Tensor& dgamma, Tensor& dbeta) { throw Error("CPU batchnorm_backward: not implemented yet"); }
void CpuBackend::gather_voxels(const Tensor& feat, const Tensor& coords, int level, Tensor& out) { throw Error("CPU gather_voxels: not implemented yet"); }
void CpuBackend::gather_voxels_backward(const Tensor& dout, const Tensor& coords, int level, Tensor& dfeat) { throw Error("CPU gather_voxels_backward: not implemented yet"); }

}  // namespace hdssl
