// Losses, each returning a mean as out [1]; sums accumulate in double over a fixed chunking, so results
// do not depend on the thread count.
//
// InfoNCE, tiled: the stacked formulation and its backward are derived once, in docs/method.md section 3,
// step 7 ("How both backends compute it"). Here a block of kTileRows rows x all 2N columns of S is one
// GEMM, reduced to the rows' log-sum-exps at once; the backward recomputes the block, overwrites it with H
// and does one more GEMM. Memory: the block (kTileRows x 2N) plus Z and dZ.

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "engine/cpu/blas.h"
#include "engine/cpu/cpu_backend.h"

namespace hdssl {
namespace {
constexpr int64_t kTileRows = 256;  // rows of S per block: 256 x 20480 floats = 21 MB at N = 10,240
constexpr int64_t kChunks = 64;
// Below this many elements a loop runs on one thread: the OpenMP team's spin-wait would otherwise fight
// OpenBLAS's own threads for the cores between the GEMMs of consecutive blocks.
constexpr int64_t kParallelWork = int64_t(1) << 18;

// Deterministic sum of term(i) for i in [0, n): fixed chunks, each summed in order, in double.
template <class F>
double chunked_sum(int64_t n, F term) {
  std::vector<double> part(kChunks, 0.0);
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t c = 0; c < kChunks; ++c) {
    double s = 0;
    for (int64_t i = n * c / kChunks; i < n * (c + 1) / kChunks; ++i) s += term(i);
    part[size_t(c)] = s;
  }
  double s = 0;
  for (double v : part) s += v;
  return s;
}

// out (rows x n) = alpha * a (rows x k) @ b^T (b is n x k), or alpha * a @ b (b is k x n): row-major GEMMs.
template <class T>
void gemm(bool tb, int64_t rows, int64_t n, int64_t k, double alpha, const T* a, const T* b, T* out) {
  blas::gemm(false, tb, rows, n, k, alpha, a, k, b, tb ? k : n, 0.0, out, n);
}

// Z = [za; zb] as one (2N x D) buffer.
template <class T>
std::vector<T> stack_rows(const Tensor& za, const Tensor& zb) {
  const int64_t nd = za.numel();
  std::vector<T> z(size_t(2 * nd));
  std::copy(za.data<T>(), za.data<T>() + nd, z.begin());
  std::copy(zb.data<T>(), zb.data<T>() + nd, z.begin() + nd);
  return z;
}
}  // namespace

void CpuBackend::infonce_forward(const Tensor& za, const Tensor& zb, double tau, Tensor& loss, Tensor& lse_a,
                                 Tensor& lse_b) {
  dispatch_float(za.dtype(), "infonce_forward", [&](auto tag) {
    using T = decltype(tag);
    const int64_t N = za.size(0), D = za.size(1), N2 = 2 * N;
    const std::vector<T> z = stack_rows<T>(za, zb);
    std::vector<T> s(static_cast<size_t>(std::min(kTileRows, N2) * N2));
    std::vector<double> lse(static_cast<size_t>(N2)), pos(static_cast<size_t>(N2));
    for (int64_t r0 = 0; r0 < N2; r0 += kTileRows) {
      const int64_t rows = std::min(kTileRows, N2 - r0);
      gemm(true, rows, N2, D, 1.0 / tau, z.data() + r0 * D, z.data(), s.data());
#pragma omp parallel for schedule(static) if (rows * N2 > kParallelWork)
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t i = r0 + r;
        const T* row = s.data() + r * N2;
        double m = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < N2; ++j) if (j != i) m = std::max(m, double(row[j]));
        double sum = 0;
        for (int64_t j = 0; j < N2; ++j) if (j != i) sum += std::exp(double(row[j]) - m);
        lse[size_t(i)] = m + std::log(sum);
        pos[size_t(i)] = double(row[(i + N) % N2]);
      }
    }
    T* la = lse_a.data<T>(); T* lb = lse_b.data<T>();
    for (int64_t i = 0; i < N; ++i) { la[i] = T(lse[size_t(i)]); lb[i] = T(lse[size_t(N + i)]); }
    loss.data<T>()[0] = T(chunked_sum(N2, [&](int64_t i) { return lse[size_t(i)] - pos[size_t(i)]; }) / double(N2));
  });
}

void CpuBackend::infonce_backward(const Tensor& za, const Tensor& zb, double tau, const Tensor& lse_a,
                                  const Tensor& lse_b, const Tensor& dloss, Tensor& dza, Tensor& dzb) {
  dispatch_float(za.dtype(), "infonce_backward", [&](auto tag) {
    using T = decltype(tag);
    const int64_t N = za.size(0), D = za.size(1), N2 = 2 * N;
    const std::vector<T> z = stack_rows<T>(za, zb);
    std::vector<double> lse(static_cast<size_t>(N2));
    for (int64_t i = 0; i < N; ++i) {
      lse[size_t(i)] = double(lse_a.data<T>()[i]);
      lse[size_t(N + i)] = double(lse_b.data<T>()[i]);
    }
    const double scale = double(dloss.data<T>()[0]) / (double(N2) * tau);
    std::vector<T> h(static_cast<size_t>(std::min(kTileRows, N2) * N2)), dz(static_cast<size_t>(N2 * D));
    for (int64_t r0 = 0; r0 < N2; r0 += kTileRows) {
      const int64_t rows = std::min(kTileRows, N2 - r0);
      gemm(true, rows, N2, D, 1.0 / tau, z.data() + r0 * D, z.data(), h.data());  // the S block
#pragma omp parallel for schedule(static) if (rows * N2 > kParallelWork)
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t i = r0 + r;
        T* row = h.data() + r * N2;
        for (int64_t j = 0; j < N2; ++j) {
          const double sij = double(row[j]);
          row[j] = j == i ? T(0) : T(std::exp(sij - lse[size_t(i)]) + std::exp(sij - lse[size_t(j)]));
        }
        row[(i + N) % N2] -= T(2);
      }
      gemm(false, rows, D, N2, scale, h.data(), z.data(), dz.data() + r0 * D);
    }
    std::copy(dz.begin(), dz.begin() + N * D, dza.data<T>());
    std::copy(dz.begin() + N * D, dz.end(), dzb.data<T>());
  });
}

void CpuBackend::mse_forward(const Tensor& x, const Tensor& target, Tensor& loss) {
  dispatch_float(x.dtype(), "mse_forward", [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.data<T>(); const T* pt = target.data<T>();
    const int64_t n = x.numel();
    const double s = chunked_sum(n, [&](int64_t i) { const double d = double(px[i]) - double(pt[i]); return d * d; });
    loss.data<T>()[0] = T(s / double(n));
  });
}

void CpuBackend::mse_backward(const Tensor& x, const Tensor& target, const Tensor& dloss, Tensor& dx) {
  dispatch_float(x.dtype(), "mse_backward", [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.data<T>(); const T* pt = target.data<T>(); T* pdx = dx.data<T>();
    const int64_t n = x.numel();
    const double c = 2.0 * double(dloss.data<T>()[0]) / double(n);
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) pdx[i] = T(c * (double(px[i]) - double(pt[i])));
  });
}

// BCE(sigmoid(x), t) = max(x,0) - x t + log(1 + exp(-|x|)): no exp overflows, no log of 0.
void CpuBackend::bce_logits_forward(const Tensor& x, const Tensor& target, Tensor& loss) {
  dispatch_float(x.dtype(), "bce_logits_forward", [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.data<T>(); const T* pt = target.data<T>();
    const int64_t n = x.numel();
    const double s = chunked_sum(n, [&](int64_t i) {
      const double v = double(px[i]);
      return std::max(v, 0.0) - v * double(pt[i]) + std::log1p(std::exp(-std::fabs(v)));
    });
    loss.data<T>()[0] = T(s / double(n));
  });
}

void CpuBackend::bce_logits_backward(const Tensor& x, const Tensor& target, const Tensor& dloss, Tensor& dx) {
  dispatch_float(x.dtype(), "bce_logits_backward", [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.data<T>(); const T* pt = target.data<T>(); T* pdx = dx.data<T>();
    const int64_t n = x.numel();
    const double c = double(dloss.data<T>()[0]) / double(n);
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) {
      const double v = double(px[i]);
      const double sig = v >= 0 ? 1.0 / (1.0 + std::exp(-v)) : std::exp(v) / (1.0 + std::exp(v));
      pdx[i] = T(c * (sig - double(pt[i])));
    }
  });
}

// Soft Dice per (n,k) over the remaining dims. With I = sum pg, P = sum p^2, G = sum g^2, Den = P + G + 1:
// d = 2I / Den, and dd/dp_v = 2 g_v / Den - 4 I p_v / Den^2.
void CpuBackend::soft_dice_forward(const Tensor& p, const Tensor& g, Tensor& loss, Tensor& sums) {
  const int64_t NK = p.size(0) * p.size(1), inner = p.numel() / NK;
  dispatch_float(p.dtype(), "soft_dice_forward", [&](auto tag) {
    using T = decltype(tag);
    const T* pp = p.data<T>(); const T* pg = g.data<T>(); T* ps = sums.data<T>();
    std::vector<double> one_minus_d(static_cast<size_t>(NK));
#pragma omp parallel for schedule(static) if (p.numel() > kParallelWork)
    for (int64_t c = 0; c < NK; ++c) {
      double I = 0, P = 0, G = 0;
      for (int64_t v = c * inner; v < (c + 1) * inner; ++v) {
        const double a = double(pp[v]), b = double(pg[v]);
        I += a * b; P += a * a; G += b * b;
      }
      ps[3 * c] = T(I); ps[3 * c + 1] = T(P); ps[3 * c + 2] = T(G);
      one_minus_d[size_t(c)] = 1.0 - 2.0 * I / (P + G + 1.0);
    }
    double s = 0;
    for (double v : one_minus_d) s += v;
    loss.data<T>()[0] = T(s / double(NK));
  });
}

void CpuBackend::soft_dice_backward(const Tensor& p, const Tensor& g, const Tensor& sums, const Tensor& dloss,
                                    Tensor& dp) {
  const int64_t NK = p.size(0) * p.size(1), inner = p.numel() / NK;
  dispatch_float(p.dtype(), "soft_dice_backward", [&](auto tag) {
    using T = decltype(tag);
    const T* pp = p.data<T>(); const T* pg = g.data<T>(); const T* ps = sums.data<T>(); T* pdp = dp.data<T>();
    const double c0 = -double(dloss.data<T>()[0]) / double(NK);  // d(mean(1 - d)) = -dd / NK
#pragma omp parallel for schedule(static) if (p.numel() > kParallelWork)
    for (int64_t c = 0; c < NK; ++c) {
      const double I = double(ps[3 * c]), den = double(ps[3 * c + 1]) + double(ps[3 * c + 2]) + 1.0;
      const double a = 2.0 / den, b = 4.0 * I / (den * den);
      for (int64_t v = c * inner; v < (c + 1) * inner; ++v)
        pdp[v] = T(c0 * (a * double(pg[v]) - b * double(pp[v])));
    }
  });
}

}  // namespace hdssl
