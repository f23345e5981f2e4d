// TEMPORARY: throwing stubs so the engine links while the matmul/rowwise/losses/optim engineer implements these.
// Delete each stub as its real kernel lands; delete this file when empty.
#include "engine/cpu/cpu_backend.h"

namespace hdssl {

void CpuBackend::matmul(const Tensor& a, const Tensor& b, Tensor& out, bool trans_a, bool trans_b, double alpha, double beta) { throw Error("CPU matmul: not implemented yet"); }
void CpuBackend::add_row_vector(const Tensor& x, const Tensor& v, Tensor& out) { throw Error("CPU add_row_vector: not implemented yet"); }
void CpuBackend::l2norm_forward(const Tensor& x, Tensor& y, Tensor& norms, double eps) { throw Error("CPU l2norm_forward: not implemented yet"); }
void CpuBackend::l2norm_backward(const Tensor& dy, const Tensor& y, const Tensor& norms, Tensor& dx) { throw Error("CPU l2norm_backward: not implemented yet"); }
void CpuBackend::logsumexp_rows(const Tensor& x, Tensor& out) { throw Error("CPU logsumexp_rows: not implemented yet"); }
void CpuBackend::logsumexp_rows_backward(const Tensor& x, const Tensor& out, const Tensor& dout, Tensor& dx) { throw Error("CPU logsumexp_rows_backward: not implemented yet"); }
void CpuBackend::infonce_forward(const Tensor& za, const Tensor& zb, double tau, Tensor& loss, Tensor& lse_a, Tensor& lse_b) { throw Error("CPU infonce_forward: not implemented yet"); }
void CpuBackend::infonce_backward(const Tensor& za, const Tensor& zb, double tau, const Tensor& lse_a, const Tensor& lse_b, const Tensor& dloss, Tensor& dza, Tensor& dzb) { throw Error("CPU infonce_backward: not implemented yet"); }
void CpuBackend::mse_forward(const Tensor& x, const Tensor& target, Tensor& loss) { throw Error("CPU mse_forward: not implemented yet"); }
void CpuBackend::mse_backward(const Tensor& x, const Tensor& target, const Tensor& dloss, Tensor& dx) { throw Error("CPU mse_backward: not implemented yet"); }
void CpuBackend::bce_logits_forward(const Tensor& x, const Tensor& target, Tensor& loss) { throw Error("CPU bce_logits_forward: not implemented yet"); }
void CpuBackend::bce_logits_backward(const Tensor& x, const Tensor& target, const Tensor& dloss, Tensor& dx) { throw Error("CPU bce_logits_backward: not implemented yet"); }
void CpuBackend::soft_dice_forward(const Tensor& p, const Tensor& g, Tensor& loss, Tensor& sums) { throw Error("CPU soft_dice_forward: not implemented yet"); }
void CpuBackend::soft_dice_backward(const Tensor& p, const Tensor& g, const Tensor& sums, const Tensor& dloss, Tensor& dp) { throw Error("CPU soft_dice_backward: not implemented yet"); }
void CpuBackend::adam_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamArgs& a, double grad_scale) { throw Error("CPU adam_step: not implemented yet"); }

}  // namespace hdssl
