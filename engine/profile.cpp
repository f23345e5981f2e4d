// See profile.h. The wrapper forwards every Backend member to the wrapped backend inside a Timed scope;
// each member has a fixed slot (its index in kOps), so a call costs two clock reads and a locked add.
#include "engine/profile.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "engine/backend.h"
#include "engine/backend_impl.h"

namespace hdssl::profile {
namespace {

struct OpName {
  const char* family;
  const char* op;
};
// One slot per Backend member (the order is the slots' numbering; see the wrapper below).
constexpr OpName kOps[] = {
    {"memory", "allocate"}, {"memory", "deallocate"}, {"memory", "copy_from_host"}, {"memory", "copy_to_host"},
    {"memory", "copy_device"}, {"memory", "synchronize"},
    {"elementwise", "fill"}, {"elementwise", "cast"}, {"elementwise", "axpby"}, {"elementwise", "mul"},
    {"elementwise", "relu_forward"}, {"elementwise", "relu_backward"}, {"elementwise", "sigmoid_forward"},
    {"elementwise", "sigmoid_backward"},
    {"reduce", "sum_all"}, {"reduce", "sum_squares"}, {"reduce", "channel_sum"},
    {"conv3d", "conv3d_forward"}, {"conv3d", "conv3d_backward_data"}, {"conv3d", "conv3d_backward_filter"},
    {"pool_upsample", "maxpool2_forward"}, {"pool_upsample", "maxpool2_backward"},
    {"pool_upsample", "upsample2_forward"}, {"pool_upsample", "upsample2_backward"},
    {"crop_concat", "crop_forward"}, {"crop_concat", "crop_backward"}, {"crop_concat", "copy_channels"},
    {"batchnorm", "batchnorm_forward_train"}, {"batchnorm", "batchnorm_forward_eval"},
    {"batchnorm", "batchnorm_backward"}, {"batchnorm", "batchnorm_relu_forward_train"},
    {"batchnorm", "batchnorm_relu_forward_eval"}, {"batchnorm", "batchnorm_relu_backward"},
    {"matmul", "matmul"}, {"matmul", "add_row_vector"},
    {"gather", "gather_voxels"}, {"gather", "gather_voxels_backward"},
    {"rowwise", "l2norm_forward"}, {"rowwise", "l2norm_backward"}, {"rowwise", "logsumexp_rows"},
    {"rowwise", "logsumexp_rows_backward"},
    {"losses", "infonce_forward"}, {"losses", "infonce_backward"}, {"losses", "mse_forward"},
    {"losses", "mse_backward"}, {"losses", "bce_logits_forward"}, {"losses", "bce_logits_backward"},
    {"losses", "soft_dice_forward"}, {"losses", "soft_dice_backward"},
    {"optim", "adam_step"}, {"optim", "clip_scale"},
};
constexpr int kNumOps = int(sizeof(kOps) / sizeof(kOps[0]));

std::mutex g_mu;
int64_t g_calls[kNumOps] = {};
double g_seconds[kNumOps] = {};
// Conv calls again, by shape: (op, "N,Ci->Co,XxYxZ,k") -> (calls, seconds). Never destroyed: the table is
// printed at exit, after static objects constructed later than the atexit registration below are gone.
auto& g_conv_shapes = *new std::map<std::pair<std::string, std::string>, std::pair<int64_t, double>>();

void print_at_exit() {
  std::fprintf(stderr, "\nHDSSL_PROFILE: CPU backend time by op, whole run\n%s", table().c_str());
}

// HDSSL_PROFILE=1 turns the profile on from the start and prints the whole run's table to stderr at exit,
// so that any program can be profiled unchanged.
std::atomic<bool> g_on{[] {
  const char* e = std::getenv("HDSSL_PROFILE");
  const bool on = e && *e && std::strcmp(e, "0") != 0;
  if (on) std::atexit(print_at_exit);
  return on;
}()};

int slot(const char* op) {
  for (int i = 0; i < kNumOps; ++i)
    if (std::strcmp(kOps[i].op, op) == 0) return i;
  std::abort();  // a member of the wrapper below missing from kOps: a programming error
}


std::string conv_shape(const Tensor& x_like, const Tensor& w) {
  char b[96];
  std::snprintf(b, sizeof b, "%lld,%lld->%lld,%lldx%lldx%lld,k%lld", (long long)x_like.size(0), (long long)w.size(1),
                (long long)w.size(0), (long long)x_like.size(2), (long long)x_like.size(3), (long long)x_like.size(4),
                (long long)w.size(2));
  return b;
}

// Times its own lifetime into slot i (unless the profile is off: a caller may hold on to the wrapper).
class Timed {
 public:
  explicit Timed(int i, std::string shape = {})
      : i_(g_on.load(std::memory_order_relaxed) ? i : -1), shape_(std::move(shape)),
        t0_(std::chrono::steady_clock::now()) {}
  ~Timed() {
    if (i_ < 0) return;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    std::lock_guard<std::mutex> lock(g_mu);
    ++g_calls[i_];
    g_seconds[i_] += s;
    if (!shape_.empty()) {
      auto& e = g_conv_shapes[{kOps[i_].op, shape_}];
      ++e.first;
      e.second += s;
    }
  }

 private:
  int i_;
  std::string shape_;
  std::chrono::steady_clock::time_point t0_;
};

#define HDSSL_TIMED(name)                  \
  static const int slot_ = slot(#name);    \
  Timed timed_(slot_);                     \
  return inner_.name
#define HDSSL_TIMED_CONV(name, x_like, w)                                           \
  static const int slot_ = slot(#name);                                             \
  Timed timed_(slot_, g_on.load(std::memory_order_relaxed) ? conv_shape(x_like, w) : ""); \
  return inner_.name

class ProfilingBackend final : public BackendImpl {
 public:
  explicit ProfilingBackend(BackendImpl& inner) : inner_(inner) {}
  Device device() const override { return inner_.device(); }

  void* allocate(size_t bytes) override { HDSSL_TIMED(allocate)(bytes); }
  void deallocate(void* p, size_t bytes) override { HDSSL_TIMED(deallocate)(p, bytes); }
  void copy_from_host(void* d, const void* s, size_t n) override { HDSSL_TIMED(copy_from_host)(d, s, n); }
  void copy_to_host(void* d, const void* s, size_t n) override { HDSSL_TIMED(copy_to_host)(d, s, n); }
  void copy_device(void* d, const void* s, size_t n) override { HDSSL_TIMED(copy_device)(d, s, n); }
  void synchronize() override { HDSSL_TIMED(synchronize)(); }

  void fill(Tensor& out, double v) override { HDSSL_TIMED(fill)(out, v); }
  void cast(const Tensor& x, Tensor& out) override { HDSSL_TIMED(cast)(x, out); }
  void axpby(double a, const Tensor& x, double b, const Tensor& y, Tensor& out) override {
    HDSSL_TIMED(axpby)(a, x, b, y, out);
  }
  void mul(const Tensor& x, const Tensor& y, Tensor& out) override { HDSSL_TIMED(mul)(x, y, out); }
  void relu_forward(const Tensor& x, Tensor& y) override { HDSSL_TIMED(relu_forward)(x, y); }
  void relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx) override { HDSSL_TIMED(relu_backward)(y, dy, dx); }
  void sigmoid_forward(const Tensor& x, Tensor& y) override { HDSSL_TIMED(sigmoid_forward)(x, y); }
  void sigmoid_backward(const Tensor& y, const Tensor& dy, Tensor& dx) override {
    HDSSL_TIMED(sigmoid_backward)(y, dy, dx);
  }

  void sum_all(const Tensor& x, Tensor& out) override { HDSSL_TIMED(sum_all)(x, out); }
  void sum_squares(const Tensor& x, Tensor& out) override { HDSSL_TIMED(sum_squares)(x, out); }
  void channel_sum(const Tensor& x, Tensor& out) override { HDSSL_TIMED(channel_sum)(x, out); }

  void conv3d_forward(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, const Conv3dArgs& a) override {
    HDSSL_TIMED_CONV(conv3d_forward, x, w)(x, w, b, y, a);
  }
  void conv3d_backward_data(const Tensor& dy, const Tensor& w, Tensor& dx, const Conv3dArgs& a) override {
    HDSSL_TIMED_CONV(conv3d_backward_data, dy, w)(dy, w, dx, a);
  }
  void conv3d_backward_filter(const Tensor& x, const Tensor& dy, Tensor& dw, const Conv3dArgs& a) override {
    HDSSL_TIMED_CONV(conv3d_backward_filter, x, dw)(x, dy, dw, a);
  }

  void maxpool2_forward(const Tensor& x, Tensor& y, Tensor& idx) override { HDSSL_TIMED(maxpool2_forward)(x, y, idx); }
  void maxpool2_backward(const Tensor& dy, const Tensor& idx, Tensor& dx) override {
    HDSSL_TIMED(maxpool2_backward)(dy, idx, dx);
  }
  void upsample2_forward(const Tensor& x, Tensor& y) override { HDSSL_TIMED(upsample2_forward)(x, y); }
  void upsample2_backward(const Tensor& dy, Tensor& dx) override { HDSSL_TIMED(upsample2_backward)(dy, dx); }
  void crop_forward(const Tensor& x, Tensor& y, const int64_t o[3]) override { HDSSL_TIMED(crop_forward)(x, y, o); }
  void crop_backward(const Tensor& dy, Tensor& dx, const int64_t o[3]) override {
    HDSSL_TIMED(crop_backward)(dy, dx, o);
  }
  void copy_channels(const Tensor& src, Tensor& dst, int64_t c0, bool reverse) override {
    HDSSL_TIMED(copy_channels)(src, dst, c0, reverse);
  }

  void batchnorm_forward_train(const Tensor& x, const Tensor& g, const Tensor& b, Tensor& y, Tensor& sm, Tensor& si,
                               Tensor& rm, Tensor& rv, const BatchNormArgs& a) override {
    HDSSL_TIMED(batchnorm_forward_train)(x, g, b, y, sm, si, rm, rv, a);
  }
  void batchnorm_forward_eval(const Tensor& x, const Tensor& g, const Tensor& b, const Tensor& rm, const Tensor& rv,
                              Tensor& y, const BatchNormArgs& a) override {
    HDSSL_TIMED(batchnorm_forward_eval)(x, g, b, rm, rv, y, a);
  }
  void batchnorm_backward(const Tensor& x, const Tensor& dy, const Tensor& g, const Tensor& sm, const Tensor& si,
                          Tensor& dx, Tensor& dg, Tensor& db) override {
    HDSSL_TIMED(batchnorm_backward)(x, dy, g, sm, si, dx, dg, db);
  }
  void batchnorm_relu_forward_train(const Tensor& x, const Tensor& g, const Tensor& b, const Tensor& r, Tensor& y,
                                    Tensor& sm, Tensor& si, Tensor& rm, Tensor& rv, const BatchNormArgs& a) override {
    HDSSL_TIMED(batchnorm_relu_forward_train)(x, g, b, r, y, sm, si, rm, rv, a);
  }
  void batchnorm_relu_forward_eval(const Tensor& x, const Tensor& g, const Tensor& b, const Tensor& r,
                                   const Tensor& rm, const Tensor& rv, Tensor& y, const BatchNormArgs& a) override {
    HDSSL_TIMED(batchnorm_relu_forward_eval)(x, g, b, r, rm, rv, y, a);
  }
  void batchnorm_relu_backward(const Tensor& x, const Tensor& y, const Tensor& dy, const Tensor& g, const Tensor& sm,
                               const Tensor& si, Tensor& dx, Tensor& dg, Tensor& db, Tensor& dr) override {
    HDSSL_TIMED(batchnorm_relu_backward)(x, y, dy, g, sm, si, dx, dg, db, dr);
  }

  void matmul(const Tensor& a, const Tensor& b, Tensor& out, bool ta, bool tb, double alpha, double beta) override {
    HDSSL_TIMED(matmul)(a, b, out, ta, tb, alpha, beta);
  }
  void add_row_vector(const Tensor& x, const Tensor& v, Tensor& out) override {
    HDSSL_TIMED(add_row_vector)(x, v, out);
  }

  void gather_voxels(const Tensor& f, const Tensor& c, int level, Tensor& out) override {
    HDSSL_TIMED(gather_voxels)(f, c, level, out);
  }
  void gather_voxels_backward(const Tensor& d, const Tensor& c, int level, Tensor& df) override {
    HDSSL_TIMED(gather_voxels_backward)(d, c, level, df);
  }

  void l2norm_forward(const Tensor& x, Tensor& y, Tensor& n, double eps) override {
    HDSSL_TIMED(l2norm_forward)(x, y, n, eps);
  }
  void l2norm_backward(const Tensor& dy, const Tensor& y, const Tensor& n, Tensor& dx) override {
    HDSSL_TIMED(l2norm_backward)(dy, y, n, dx);
  }
  void logsumexp_rows(const Tensor& x, Tensor& out) override { HDSSL_TIMED(logsumexp_rows)(x, out); }
  void logsumexp_rows_backward(const Tensor& x, const Tensor& out, const Tensor& d, Tensor& dx) override {
    HDSSL_TIMED(logsumexp_rows_backward)(x, out, d, dx);
  }

  void infonce_forward(const Tensor& za, const Tensor& zb, double tau, Tensor& loss, Tensor& la,
                       Tensor& lb) override {
    HDSSL_TIMED(infonce_forward)(za, zb, tau, loss, la, lb);
  }
  void infonce_backward(const Tensor& za, const Tensor& zb, double tau, const Tensor& la, const Tensor& lb,
                        const Tensor& dl, Tensor& dza, Tensor& dzb) override {
    HDSSL_TIMED(infonce_backward)(za, zb, tau, la, lb, dl, dza, dzb);
  }
  void mse_forward(const Tensor& x, const Tensor& t, Tensor& loss) override { HDSSL_TIMED(mse_forward)(x, t, loss); }
  void mse_backward(const Tensor& x, const Tensor& t, const Tensor& dl, Tensor& dx) override {
    HDSSL_TIMED(mse_backward)(x, t, dl, dx);
  }
  void bce_logits_forward(const Tensor& x, const Tensor& t, Tensor& loss) override {
    HDSSL_TIMED(bce_logits_forward)(x, t, loss);
  }
  void bce_logits_backward(const Tensor& x, const Tensor& t, const Tensor& dl, Tensor& dx) override {
    HDSSL_TIMED(bce_logits_backward)(x, t, dl, dx);
  }
  void soft_dice_forward(const Tensor& p, const Tensor& g, Tensor& loss, Tensor& sums) override {
    HDSSL_TIMED(soft_dice_forward)(p, g, loss, sums);
  }
  void soft_dice_backward(const Tensor& p, const Tensor& g, const Tensor& sums, const Tensor& dl, Tensor& dp) override {
    HDSSL_TIMED(soft_dice_backward)(p, g, sums, dl, dp);
  }

  void adam_step(Tensor& p, const Tensor& g, Tensor& m, Tensor& v, const AdamArgs& a, double grad_scale,
                 const Tensor& scale, const Tensor& step_count) override {
    HDSSL_TIMED(adam_step)(p, g, m, v, a, grad_scale, scale, step_count);
  }
  void clip_scale(const Tensor& sum_squares, double max_norm, double eps, Tensor& scale) override {
    HDSSL_TIMED(clip_scale)(sum_squares, max_norm, eps, scale);
  }

 private:
  BackendImpl& inner_;
};
#undef HDSSL_TIMED
#undef HDSSL_TIMED_CONV

}  // namespace

void enable(bool on) { g_on.store(on, std::memory_order_relaxed); }
bool enabled() { return g_on.load(std::memory_order_relaxed); }

void reset() {
  std::lock_guard<std::mutex> lock(g_mu);
  std::fill(std::begin(g_calls), std::end(g_calls), 0);
  std::fill(std::begin(g_seconds), std::end(g_seconds), 0.0);
  g_conv_shapes.clear();
}

std::vector<Row> conv_rows() {
  std::vector<Row> out;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    for (const auto& [key, v] : g_conv_shapes) out.push_back(Row{key.second, key.first, v.first, v.second});
  }
  std::stable_sort(out.begin(), out.end(), [](const Row& a, const Row& b) { return a.seconds > b.seconds; });
  return out;
}

std::vector<Row> rows() {
  std::vector<Row> out;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    for (int i = 0; i < kNumOps; ++i)
      if (g_calls[i]) out.push_back(Row{kOps[i].family, kOps[i].op, g_calls[i], g_seconds[i]});
  }
  std::stable_sort(out.begin(), out.end(), [](const Row& a, const Row& b) { return a.seconds > b.seconds; });
  return out;
}

std::string table(int64_t per) {
  const std::vector<Row> rs = rows();
  const double d = double(std::max<int64_t>(1, per));
  double total = 0;
  std::vector<std::string> families;  // in order of first (largest) appearance... then sorted by time below
  for (const Row& r : rs) {
    total += r.seconds;
    if (std::find(families.begin(), families.end(), r.family) == families.end()) families.push_back(r.family);
  }
  auto family_seconds = [&](const std::string& f) {
    double s = 0;
    for (const Row& r : rs) s += r.family == f ? r.seconds : 0;
    return s;
  };
  std::stable_sort(families.begin(), families.end(),
                   [&](const std::string& a, const std::string& b) { return family_seconds(a) > family_seconds(b); });
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "%-14s %-26s %10s %12s %7s\n", "family", "op", "calls", "ms", "share");
  out += line;
  const double pct = total > 0 ? 100.0 / total : 0;
  for (const std::string& f : families) {
    const double fs = family_seconds(f);
    std::snprintf(line, sizeof line, "%-14s %-26s %10s %12.3f %6.1f%%\n", f.c_str(), "(all)", "", fs * 1e3 / d,
                  fs * pct);
    out += line;
    for (const Row& r : rs) {
      if (r.family != f) continue;
      std::snprintf(line, sizeof line, "%-14s %-26s %10.1f %12.3f %6.1f%%\n", "", r.op.c_str(), double(r.calls) / d,
                    r.seconds * 1e3 / d, r.seconds * pct);
      out += line;
    }
  }
  std::snprintf(line, sizeof line, "%-14s %-26s %10s %12.3f %6.1f%%\n", "total", "", "", total * 1e3 / d,
                total > 0 ? 100.0 : 0.0);
  out += line;
  const std::vector<Row> cs = conv_rows();
  if (!cs.empty()) {
    std::snprintf(line, sizeof line, "conv3d by shape (N,Ci->Co,XxYxZ,kernel):\n");
    out += line;
    for (const Row& r : cs) {
      std::snprintf(line, sizeof line, "  %-30s %-24s %8.1f %12.3f %6.1f%%\n", r.family.c_str(), r.op.c_str(),
                    double(r.calls) / d, r.seconds * 1e3 / d, r.seconds * pct);
      out += line;
    }
  }
  return out;
}

BackendImpl& wrap(BackendImpl& inner) {
  static ProfilingBackend wrapper(inner);
  return wrapper;
}

}  // namespace hdssl::profile
