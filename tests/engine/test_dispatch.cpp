// The dispatch (engine/dispatch.cpp) checks every primitive's contract before a backend runs: a call that
// breaks it throws hdssl::Error naming the primitive and never reaches the implementation; a call that
// keeps it reaches the implementation unchanged. Shown with a recording stand-in implementation, so the
// same holds for the CUDA backend, which is only a different implementation behind the same checks.
#include <gtest/gtest.h>

#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/backend_impl.h"

namespace hdssl {
namespace {

// Counts the calls that reach it; computes nothing.
class RecordingImpl final : public BackendImpl {
 public:
  explicit RecordingImpl(Device d) : device_(d) {}
  int calls = 0;
  Device device() const override { return device_; }
  void* allocate(size_t) override { throw Error("RecordingImpl allocates nothing"); }
  void deallocate(void*, size_t) override {}
  void copy_from_host(void*, const void*, size_t) override {}
  void copy_to_host(void*, const void*, size_t) override {}
  void copy_device(void*, const void*, size_t) override {}
  void synchronize() override {}
  void fill(Tensor&, double) override { ++calls; }
  void cast(const Tensor&, Tensor&) override { ++calls; }
  void axpby(double, const Tensor&, double, const Tensor&, Tensor&) override { ++calls; }
  void mul(const Tensor&, const Tensor&, Tensor&) override { ++calls; }
  void relu_forward(const Tensor&, Tensor&) override { ++calls; }
  void relu_backward(const Tensor&, const Tensor&, Tensor&) override { ++calls; }
  void sigmoid_forward(const Tensor&, Tensor&) override { ++calls; }
  void sigmoid_backward(const Tensor&, const Tensor&, Tensor&) override { ++calls; }
  void sum_all(const Tensor&, Tensor&) override { ++calls; }
  void sum_squares(const Tensor&, Tensor&) override { ++calls; }
  void channel_sum(const Tensor&, Tensor&) override { ++calls; }
  void conv3d_forward(const Tensor&, const Tensor&, const Tensor&, Tensor&, const Conv3dArgs&) override { ++calls; }
  void conv3d_backward_data(const Tensor&, const Tensor&, Tensor&, const Conv3dArgs&) override { ++calls; }
  void conv3d_backward_filter(const Tensor&, const Tensor&, Tensor&, const Conv3dArgs&) override { ++calls; }
  void maxpool2_forward(const Tensor&, Tensor&, Tensor&) override { ++calls; }
  void maxpool2_backward(const Tensor&, const Tensor&, Tensor&) override { ++calls; }
  void upsample2_forward(const Tensor&, Tensor&) override { ++calls; }
  void upsample2_backward(const Tensor&, Tensor&) override { ++calls; }
  void crop_forward(const Tensor&, Tensor&, const int64_t[3]) override { ++calls; }
  void crop_backward(const Tensor&, Tensor&, const int64_t[3]) override { ++calls; }
  void copy_channels(const Tensor&, Tensor&, int64_t, bool) override { ++calls; }
  void batchnorm_forward_train(const Tensor&, const Tensor&, const Tensor&, Tensor&, Tensor&, Tensor&, Tensor&,
                               Tensor&, const BatchNormArgs&) override { ++calls; }
  void batchnorm_forward_eval(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, Tensor&,
                              const BatchNormArgs&) override { ++calls; }
  void batchnorm_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, Tensor&, Tensor&,
                          Tensor&) override { ++calls; }
  void batchnorm_relu_forward_train(const Tensor&, const Tensor&, const Tensor&, const Tensor&, Tensor&, Tensor&,
                                    Tensor&, Tensor&, Tensor&, const BatchNormArgs&) override { ++calls; }
  void batchnorm_relu_forward_eval(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                   const Tensor&, Tensor&, const BatchNormArgs&) override { ++calls; }
  void batchnorm_relu_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                               Tensor&, Tensor&, Tensor&, Tensor&) override { ++calls; }
  void matmul(const Tensor&, const Tensor&, Tensor&, bool, bool, double, double) override { ++calls; }
  void add_row_vector(const Tensor&, const Tensor&, Tensor&) override { ++calls; }
  void gather_voxels(const Tensor&, const Tensor&, int, Tensor&) override { ++calls; }
  void gather_voxels_backward(const Tensor&, const Tensor&, int, Tensor&) override { ++calls; }
  void l2norm_forward(const Tensor&, Tensor&, Tensor&, double) override { ++calls; }
  void l2norm_backward(const Tensor&, const Tensor&, const Tensor&, Tensor&) override { ++calls; }
  void logsumexp_rows(const Tensor&, Tensor&) override { ++calls; }
  void logsumexp_rows_backward(const Tensor&, const Tensor&, const Tensor&, Tensor&) override { ++calls; }
  void infonce_forward(const Tensor&, const Tensor&, double, Tensor&, Tensor&, Tensor&) override { ++calls; }
  void infonce_backward(const Tensor&, const Tensor&, double, const Tensor&, const Tensor&, const Tensor&, Tensor&,
                        Tensor&) override { ++calls; }
  void mse_forward(const Tensor&, const Tensor&, Tensor&) override { ++calls; }
  void mse_backward(const Tensor&, const Tensor&, const Tensor&, Tensor&) override { ++calls; }
  void bce_logits_forward(const Tensor&, const Tensor&, Tensor&) override { ++calls; }
  void bce_logits_backward(const Tensor&, const Tensor&, const Tensor&, Tensor&) override { ++calls; }
  void soft_dice_forward(const Tensor&, const Tensor&, Tensor&, Tensor&) override { ++calls; }
  void soft_dice_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, Tensor&) override { ++calls; }
  void adam_step(Tensor&, const Tensor&, Tensor&, Tensor&, const AdamArgs&, double, const Tensor&,
                 const Tensor&) override {
    ++calls;
  }
  void clip_scale(const Tensor&, double, double, Tensor&) override { ++calls; }

 private:
  Device device_;
};

Tensor f32(const Shape& s) { return Tensor::zeros(s, DType::F32); }
Tensor f64(const Shape& s) { return Tensor::zeros(s, DType::F64); }
Tensor i32(const Shape& s) { return Tensor::zeros(s, DType::I32); }

// Expects `call` to throw an Error whose message names `op`.
void expect_refused(const std::function<void()>& call, const std::string& op, const std::string& why) {
  try {
    call();
    ADD_FAILURE() << op << " accepted a call that breaks its contract: " << why;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(op), std::string::npos) << why << ": message does not name " << op
                                                                 << ": " << e.what();
  }
}

TEST(Dispatch, CallsThatKeepTheContractReachTheImplementation) {
  RecordingImpl impl(Device::cpu());
  Backend be(impl);
  Tensor x = f32({2, 3, 4, 5, 6}), y = f32({2, 3, 4, 5, 6});
  be.relu_forward(x, y);
  Tensor y8 = f32({2, 8, 4, 5, 6});
  be.conv3d_forward(x, f32({8, 3, 3, 3, 3}), f32({8}), y8, Conv3dArgs{1});
  be.conv3d_forward(x, f32({8, 3, 1, 1, 1}), Tensor(), y8, Conv3dArgs{0});  // bias optional, 1x1x1
  Tensor c = f32({3});
  be.batchnorm_forward_train(x, c, c, y, c, c, c, c, BatchNormArgs{});
  be.batchnorm_relu_forward_train(x, c, c, Tensor(), y, c, c, c, c, BatchNormArgs{});  // residual optional
  be.batchnorm_relu_forward_eval(x, c, c, x, c, c, y, BatchNormArgs{});
  Tensor no_dr;
  be.batchnorm_relu_backward(x, y, y, c, c, c, y, c, c, no_dr);
  Tensor py = f32({1, 2, 3, 2, 2}), idx = i32({1, 2, 3, 2, 2});
  be.maxpool2_forward(f32({1, 2, 5, 4, 3}), py, idx);  // ceil mode: 5, 4, 3 -> 3, 2, 2
  Tensor mm = f64({3, 5});
  be.matmul(f64({4, 3}), f64({5, 4}), mm, /*trans_a=*/true, /*trans_b=*/true, 1.0, 0.0);
  Tensor rows = f32({14, 3});
  be.gather_voxels(x, i32({2, 7, 3}), 1, rows);
  Tensor loss = f32({1}), lse_a = f32({6}), lse_b = f32({6});
  be.infonce_forward(f32({6, 4}), f32({6, 4}), 0.1, loss, lse_a, lse_b);
  Tensor ints = i32({3}), doubles = f64({3});
  be.fill(ints, 1.0);  // fill and cast take any dtype
  be.cast(ints, doubles);
  EXPECT_EQ(impl.calls, 13);
}

TEST(Dispatch, CallsThatBreakTheContractNeverReachTheImplementation) {
  RecordingImpl impl(Device::cpu());
  Backend be(impl);
  const Tensor v5 = f32({2, 3, 4, 5, 6});
  const int64_t inside[3] = {1, 1, 1}, outside[3] = {3, 0, 0};
  struct Case {
    std::string op, why;
    std::function<void()> call;
  };
  const std::vector<Case> cases = {
      {"relu_forward", "shapes differ", [&] { Tensor y = f32({5}); be.relu_forward(f32({4}), y); }},
      {"relu_forward", "dtypes differ", [&] { Tensor y = f64({4}); be.relu_forward(f32({4}), y); }},
      {"relu_forward", "int32 input", [&] { Tensor y = i32({4}); be.relu_forward(i32({4}), y); }},
      {"relu_forward", "undefined output", [&] { Tensor y; be.relu_forward(f32({4}), y); }},
      {"axpby", "output shape", [&] { Tensor o = f32({3}); be.axpby(1, f32({4}), 1, f32({4}), o); }},
      {"sum_all", "out not [1]", [&] { Tensor o = f32({2}); be.sum_all(f32({4}), o); }},
      {"channel_sum", "out not [C]", [&] { Tensor o = f32({4}); be.channel_sum(v5, o); }},
      {"conv3d_forward", "kernel not 2*pad+1",
       [&] { Tensor y = f32({2, 8, 4, 5, 6}); be.conv3d_forward(v5, f32({8, 3, 3, 3, 3}), Tensor(), y, {0}); }},
      {"conv3d_forward", "input channels",
       [&] { Tensor y = f32({2, 8, 4, 5, 6}); be.conv3d_forward(v5, f32({8, 4, 3, 3, 3}), Tensor(), y, {1}); }},
      {"conv3d_forward", "output shape",
       [&] { Tensor y = f32({2, 8, 4, 5, 5}); be.conv3d_forward(v5, f32({8, 3, 3, 3, 3}), Tensor(), y, {1}); }},
      {"conv3d_forward", "bias size",
       [&] { Tensor y = f32({2, 8, 4, 5, 6}); be.conv3d_forward(v5, f32({8, 3, 3, 3, 3}), f32({7}), y, {1}); }},
      {"conv3d_backward_data", "dx shape",
       [&] {
         Tensor dx = f32({2, 4, 4, 5, 6});
         be.conv3d_backward_data(f32({2, 8, 4, 5, 6}), f32({8, 3, 3, 3, 3}), dx, {1});
       }},
      {"conv3d_backward_filter", "dw dtype",
       [&] { Tensor dw = f64({8, 3, 3, 3, 3}); be.conv3d_backward_filter(v5, f32({2, 8, 4, 5, 6}), dw, {1}); }},
      {"maxpool2_forward", "idx not int32",
       [&] {
         Tensor y = f32({1, 2, 3, 2, 2}), idx = f32({1, 2, 3, 2, 2});
         be.maxpool2_forward(f32({1, 2, 5, 4, 3}), y, idx);
       }},
      {"upsample2_backward", "dy not twice dx",
       [&] { Tensor dx = f32({1, 2, 3, 3, 3}); be.upsample2_backward(f32({1, 2, 6, 6, 5}), dx); }},
      {"crop_forward", "box outside", [&] { Tensor y = f32({2, 3, 2, 2, 2}); be.crop_forward(v5, y, outside); }},
      {"crop_forward", "4D box", [&] { Tensor y = f32({2, 3, 2, 2}); be.crop_forward(v5, y, inside); }},
      {"copy_channels", "channel range",
       [&] { Tensor d = f32({2, 4, 5}); be.copy_channels(f32({2, 3, 5}), d, 2, false); }},
      {"batchnorm_forward_train", "one value per channel",
       [&] {
         Tensor c = f32({3}), y = f32({1, 3});
         be.batchnorm_forward_train(f32({1, 3}), c, c, y, c, c, c, c, {});
       }},
      {"batchnorm_backward", "dgamma size",
       [&] {
         Tensor c = f32({3}), d = f32({4}), dx = f32(v5.shape());
         be.batchnorm_backward(v5, v5, c, c, c, dx, d, c);
       }},
      {"batchnorm_relu_forward_train", "one value per channel",
       [&] {
         Tensor c = f32({3}), y = f32({1, 3});
         be.batchnorm_relu_forward_train(f32({1, 3}), c, c, Tensor(), y, c, c, c, c, {});
       }},
      {"batchnorm_relu_forward_train", "residual shape",
       [&] {
         Tensor c = f32({3}), y = f32(v5.shape());
         be.batchnorm_relu_forward_train(v5, c, c, f32({2, 3, 4, 5, 5}), y, c, c, c, c, {});
       }},
      {"batchnorm_relu_forward_eval", "residual dtype",
       [&] {
         Tensor c = f32({3}), y = f32(v5.shape());
         be.batchnorm_relu_forward_eval(v5, c, c, f64(v5.shape()), c, c, y, {});
       }},
      {"batchnorm_relu_backward", "y shape",
       [&] {
         Tensor c = f32({3}), dx = f32(v5.shape()), dr;
         be.batchnorm_relu_backward(v5, f32({2, 3, 4, 5}), v5, c, c, c, dx, c, c, dr);
       }},
      {"batchnorm_relu_backward", "dr shape",
       [&] {
         Tensor c = f32({3}), dx = f32(v5.shape()), dr = f32({2, 3});
         be.batchnorm_relu_backward(v5, v5, v5, c, c, c, dx, c, c, dr);
       }},
      {"matmul", "inner sizes",
       [&] { Tensor o = f32({4, 5}); be.matmul(f32({4, 3}), f32({2, 5}), o, false, false, 1, 0); }},
      {"add_row_vector", "vector length",
       [&] { Tensor o = f32({4, 3}); be.add_row_vector(f32({4, 3}), f32({4}), o); }},
      {"gather_voxels", "coords not int32",
       [&] { Tensor o = f32({14, 3}); be.gather_voxels(v5, f32({2, 7, 3}), 0, o); }},
      {"gather_voxels", "level out of range",
       [&] { Tensor o = f32({14, 3}); be.gather_voxels(v5, i32({2, 7, 3}), 31, o); }},
      {"gather_voxels_backward", "dout rows",
       [&] { Tensor d = f32(v5.shape()); be.gather_voxels_backward(f32({13, 3}), i32({2, 7, 3}), 0, d); }},
      {"l2norm_forward", "norms length",
       [&] { Tensor y = f32({6, 4}), n = f32({4}); be.l2norm_forward(f32({6, 4}), y, n, 1e-12); }},
      {"logsumexp_rows", "3D input", [&] { Tensor o = f32({6}); be.logsumexp_rows(f32({6, 4, 1}), o); }},
      {"infonce_forward", "tau <= 0",
       [&] {
         Tensor l = f32({1}), a = f32({6}), b = f32({6});
         be.infonce_forward(f32({6, 4}), f32({6, 4}), 0.0, l, a, b);
       }},
      {"infonce_backward", "zb shape",
       [&] {
         Tensor a = f32({6, 4}), b = f32({5, 4});
         be.infonce_backward(f32({6, 4}), f32({5, 4}), 0.1, f32({6}), f32({6}), f32({1}), a, b);
       }},
      {"mse_forward", "loss not a scalar", [&] { Tensor l = f32({2}); be.mse_forward(f32({4}), f32({4}), l); }},
      {"soft_dice_backward", "sums shape",
       [&] {
         Tensor dp = f32({2, 3, 4});
         be.soft_dice_backward(f32({2, 3, 4}), f32({2, 3, 4}), f32({6, 2}), f32({1}), dp);
       }},
      {"adam_step", "step 0",
       [&] {
         Tensor p = f32({4}), m = f32({4}), v = f32({4});
         AdamArgs a;
         a.step = 0;
         be.adam_step(p, f32({4}), m, v, a, 1.0);
       }},
      {"adam_step", "device scale not [1]",
       [&] {
         Tensor p = f32({4}), m = f32({4}), v = f32({4});
         be.adam_step(p, f32({4}), m, v, AdamArgs{}, 1.0, f32({2}));
       }},
      {"adam_step", "step_count not float64 [1]",
       [&] {
         Tensor p = f32({4}), m = f32({4}), v = f32({4});
         be.adam_step(p, f32({4}), m, v, AdamArgs{}, 1.0, Tensor(), f32({1}));
       }},
      {"clip_scale", "max_norm 0", [&] { Tensor s = f32({1}); be.clip_scale(f32({1}), 0.0, 1e-6, s); }},
      {"clip_scale", "sum not [1]", [&] { Tensor s = f32({1}); be.clip_scale(f32({2}), 1.0, 1e-6, s); }},
      {"clip_scale", "dtypes differ",
       [&] { Tensor s = Tensor::zeros({1}, DType::F64); be.clip_scale(f32({1}), 1.0, 1e-6, s); }},
  };
  for (const Case& c : cases) expect_refused(c.call, c.op, c.op + ": " + c.why);
  EXPECT_EQ(impl.calls, 0) << "a call that breaks the contract reached the implementation";
}

// The device check is the dispatch's too: a backend for cuda:0 (here a stand-in, no GPU needed) refuses
// CPU tensors before its implementation sees them.
TEST(Dispatch, TensorsOnAnotherDeviceAreRefused) {
  RecordingImpl impl(Device::cuda(0));
  Backend be(impl);
  expect_refused([&] { Tensor y = f32({4}); be.relu_forward(f32({4}), y); }, "relu_forward",
                 "CPU tensors on cuda:0");
  expect_refused([&] { Tensor y = f32({4}); be.fill(y, 0.0); }, "fill", "CPU tensor on cuda:0");
  EXPECT_EQ(impl.calls, 0);
}

// The real CPU backend behind the same checks: a bad call throws and leaves the output untouched.
TEST(Dispatch, TheCpuBackendIsBehindTheChecks) {
  Tensor y = Tensor::full({5}, 7.0, DType::F32);
  expect_refused([&] { backend(Device::cpu()).relu_forward(f32({4}), y); }, "relu_forward", "shapes differ");
  EXPECT_EQ(y.to_vector<float>(), std::vector<float>(5, 7.0f));
}

// The registry says whether this build has the CUDA backend (engine/CMakeLists.txt passes HDSSL_HAVE_CUDA
// to the engine library; HDSSL_TEST_BUILT_WITH_CUDA tells this test which build it is in).
TEST(Dispatch, NoCudaDeviceMessageSaysHowTheEngineWasBuilt) {
  if (cuda_available()) GTEST_SKIP() << "a CUDA backend is registered";
  try {
    backend(Device::cuda(0));
    ADD_FAILURE() << "backend(cuda:0) without a CUDA backend did not throw";
  } catch (const Error& e) {
    const std::string want = HDSSL_TEST_BUILT_WITH_CUDA ? "built with CUDA" : "built without CUDA support";
    EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace hdssl
