// Synchronized training-mode batch norm (autograd/batchnorm_sync.h), built from backend primitives so it
// runs on every backend: channel_sum for the per-channel sums and batchnorm_forward_eval as the per-channel
// affine map y = x * a[c] + b[c] (running_mean = 0, running_var = 1, eps = 0 make it exactly that).
// The [C]-sized statistics travel through the host in float64, where the reducer sums them.
//
// Forward (M = global count, mean and var biased, over every process's values):
//   pass 1: M, sum(x)               -> mean
//   pass 2: sum((x - mean)^2)       -> var;  y = (x - mean) / sqrt(var + eps) * gamma + beta
// Backward (xhat = (x - mean) / sqrt(var + eps), k = gamma / sqrt(var + eps)):
//   global sum(dy), sum(dy * xhat)  -> dx = k * (dy - sum(dy)/M - xhat * sum(dy * xhat)/M)
//   local sum(dy * xhat), sum(dy)   -> dgamma, dbeta
#include <cmath>

#include "autograd/batchnorm_sync.h"
#include "autograd/functions.h"
#include "engine/check.h"

namespace hdssl {
namespace {
BatchNormStatsReducer* g_reducer = nullptr;

std::vector<double> host_doubles(const Tensor& t) { return t.to(Device::cpu()).to(DType::F64).to_vector<double>(); }

Tensor vec_like(const std::vector<double>& v, const Tensor& like) {
  return Tensor::from_vector(v, {int64_t(v.size())}).to(like.dtype()).to(like.device());
}

Tensor channel_sums(Backend& be, const Tensor& x, const Tensor& like_c) {
  Tensor s = Tensor::empty_like(like_c);
  be.channel_sum(x, s);
  return s;
}

// y = x * a[c] + b[c] over channels.
Tensor channel_affine(Backend& be, const Tensor& x, const std::vector<double>& a, const std::vector<double>& b,
                      const Tensor& like_c) {
  const std::vector<double> zeros(a.size(), 0.0), ones(a.size(), 1.0);
  Tensor y = Tensor::empty_like(x);
  BatchNormArgs exact;
  exact.eps = 0;
  be.batchnorm_forward_eval(x, vec_like(a, like_c), vec_like(b, like_c), vec_like(zeros, like_c),
                            vec_like(ones, like_c), y, exact);
  return y;
}

// Sums a host vector over processes through the reducer.
std::vector<double> reduce(BatchNormStatsReducer& r, const std::vector<double>& v) {
  Tensor t = Tensor::from_vector(v, {int64_t(v.size())});
  r.all_reduce_sum(t);
  HDSSL_CHECK(t.dtype() == DType::F64 && t.numel() == int64_t(v.size()) && t.device() == Device::cpu())
      << "BatchNormStatsReducer must sum in place, got " << t.describe();
  return t.to_vector<double>();
}
}  // namespace

void set_batchnorm_stats_reducer(BatchNormStatsReducer* r) { g_reducer = r; }
BatchNormStatsReducer* batchnorm_stats_reducer() { return g_reducer; }

namespace ag {

Variable batchnorm_synced(const Variable& x, const Variable& gamma, const Variable& beta, Tensor& running_mean,
                          Tensor& running_var, const BatchNormArgs& args, BatchNormStatsReducer& r) {
  const Tensor xv = x.value(), gv = gamma.value();
  HDSSL_CHECK(xv.dim() >= 2 && gv.dim() == 1 && gv.size(0) == xv.size(1))
      << "batchnorm (synchronized): expected x [N,C,...] and gamma [C], got " << xv.describe() << " and "
      << gv.describe();
  Backend& be = backend(xv.device());
  const int64_t C = xv.size(1);
  const size_t Cs = size_t(C);

  // pass 1: global count and mean
  std::vector<double> buf = host_doubles(channel_sums(be, xv, gv));
  buf.push_back(double(xv.numel() / C));
  buf = reduce(r, buf);
  const double M = buf[Cs];
  HDSSL_CHECK(M > 1) << "batchnorm (synchronized): expected more than 1 value per channel over all processes, got " << M
                     << " (x " << xv.describe() << ")";
  std::vector<double> mean(Cs), neg_mean(Cs), ones(Cs, 1.0);
  for (size_t c = 0; c < Cs; ++c) {
    mean[c] = buf[c] / M;
    neg_mean[c] = -mean[c];
  }
  // pass 2: global biased variance
  Tensor dev = channel_affine(be, xv, ones, neg_mean, gv);
  be.mul(dev, dev, dev);
  const std::vector<double> ss = reduce(r, host_doubles(channel_sums(be, dev, gv)));
  std::vector<double> var(Cs), invstd(Cs), scale(Cs), shift(Cs), xhat_shift(Cs);
  const std::vector<double> g = host_doubles(gv), b = host_doubles(beta.value());
  for (size_t c = 0; c < Cs; ++c) {
    var[c] = ss[c] / M;
    invstd[c] = 1.0 / std::sqrt(var[c] + args.eps);
    scale[c] = invstd[c] * g[c];
    shift[c] = b[c] - mean[c] * scale[c];
    xhat_shift[c] = -mean[c] * invstd[c];
  }
  Tensor y = channel_affine(be, xv, scale, shift, gv);

  // running statistics, in place (unbiased variance, as the per-process kernel)
  std::vector<double> rm = host_doubles(running_mean), rv = host_doubles(running_var);
  for (size_t c = 0; c < Cs; ++c) {
    rm[c] = (1.0 - args.momentum) * rm[c] + args.momentum * mean[c];
    rv[c] = (1.0 - args.momentum) * rv[c] + args.momentum * var[c] * M / (M - 1);
  }
  const Tensor rm_new = vec_like(rm, running_mean).to(Device::cpu()),
               rv_new = vec_like(rv, running_var).to(Device::cpu());
  backend(running_mean.device()).copy_from_host(running_mean.raw(), rm_new.raw(), rm_new.nbytes());
  backend(running_var.device()).copy_from_host(running_var.raw(), rv_new.raw(), rv_new.nbytes());

  BatchNormStatsReducer* rp = &r;
  return make_result("batchnorm_synced", y, {x, gamma, beta},
                     [xv, gv, invstd, xhat_shift, g, M, rp](const Tensor& dy, const std::vector<bool>& needs,
                                                            std::vector<Tensor>& gin) {
                       Backend& be = backend(dy.device());
                       const size_t Cs = invstd.size();
                       const Tensor xhat = channel_affine(be, xv, invstd, xhat_shift, gv);
                       Tensor dy_xhat = Tensor::empty_like(xhat);
                       be.mul(dy, xhat, dy_xhat);
                       const Tensor sum_dy = channel_sums(be, dy, gv), sum_dy_xhat = channel_sums(be, dy_xhat, gv);
                       // Always reduced, needed or not: every process must make the same collective calls.
                       std::vector<double> buf = host_doubles(sum_dy);
                       const std::vector<double> second = host_doubles(sum_dy_xhat);
                       buf.insert(buf.end(), second.begin(), second.end());
                       buf = reduce(*rp, buf);
                       if (needs[0]) {
                         std::vector<double> k(Cs), shift(Cs), a2(Cs), zeros(Cs, 0.0);
                         for (size_t c = 0; c < Cs; ++c) {
                           k[c] = g[c] * invstd[c];
                           shift[c] = -k[c] * buf[c] / M;
                           a2[c] = k[c] * buf[Cs + c] / M;
                         }
                         const Tensor t1 = channel_affine(be, dy, k, shift, gv),
                                      t2 = channel_affine(be, xhat, a2, zeros, gv);
                         gin[0] = Tensor::empty_like(dy);
                         be.axpby(1.0, t1, -1.0, t2, gin[0]);
                       }
                       if (needs[1]) gin[1] = sum_dy_xhat;
                       if (needs[2]) gin[2] = sum_dy;
                     });
}

}  // namespace ag
}  // namespace hdssl
