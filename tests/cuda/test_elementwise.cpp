// Parity of the elementwise primitives, add_row_vector and copy_channels (cuda/kernels/elementwise.cu,
// cuda/backend.cpp). Exact operations up to the last bit of exp, and of nvcc's fused multiply-add in
// axpby (a*x + b*y may round once instead of twice), so tolerances are tight.
#include "tests/cuda/parity.h"

namespace hdssl::test {
namespace {

const std::vector<Shape> kShapes = {{1}, {7}, {3, 5}, {2, 3, 5, 7, 3}, {1000003}};

TEST(CudaElementwise, FillCastAxpbyMul) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(1);
  for (DType t : kFloatTypes)
    for (const Shape& s : kShapes) {
      Tensor x = random(s, t, rng), y = random(s, t, rng);
      expect_parity([&](Device d) {
        Tensor f = output(s, t, d), a = output(s, t, d), m = output(s, t, d);
        backend(d).fill(f, -2.5);
        backend(d).axpby(0.75, on(d, x), -1.25, on(d, y), a);
        backend(d).mul(on(d, x), on(d, y), m);
        return std::vector<Tensor>{f, a, m};
      }, {tol(t, 0, 0), tol(t, 2e-7, 1e-6), tol(t, 0, 1e-7)}, "fill/axpby/mul " + name(t, s));
    }
  // cast between every pair of dtypes (float -> int truncates toward zero)
  const std::vector<DType> all = {DType::F32, DType::F64, DType::I32};
  Tensor base = random({3, 17}, DType::F64, rng, -50, 50);
  for (DType from : all)
    for (DType to : all) {
      Tensor x = base.to(from);
      expect_parity([&](Device d) {
        Tensor o = output(x.shape(), to, d);
        backend(d).cast(on(d, x), o);
        return std::vector<Tensor>{o};
      }, {Tol{0, 0}}, std::string("cast ") + dtype_name(from) + " -> " + dtype_name(to));
    }
  // fill of an int32 tensor
  expect_parity([&](Device d) {
    Tensor o = output({5, 3}, DType::I32, d);
    backend(d).fill(o, 42);
    return std::vector<Tensor>{o};
  }, {Tol{0, 0}}, "fill int32");
}

TEST(CudaElementwise, ReluSigmoidForwardBackward) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(2);
  for (DType t : kFloatTypes)
    for (const Shape& s : kShapes) {
      Tensor x = random(s, t, rng, -6, 6), dy = random(s, t, rng);
      expect_parity([&](Device d) {
        Backend& b = backend(d);
        Tensor r = output(s, t, d), dr = output(s, t, d), sg = output(s, t, d), dsg = output(s, t, d);
        b.relu_forward(on(d, x), r);
        b.relu_backward(r, on(d, dy), dr);
        b.sigmoid_forward(on(d, x), sg);
        b.sigmoid_backward(sg, on(d, dy), dsg);
        return std::vector<Tensor>{r, dr, sg, dsg};
      }, {tol(t, 0, 0), tol(t, 0, 0), tol(t, 1e-7, 1e-6), tol(t, 1e-7, 1e-5)}, "relu/sigmoid " + name(t, s));
    }
}

TEST(CudaElementwise, AddRowVector) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(3);
  for (DType t : kFloatTypes)
    for (Shape s : std::vector<Shape>{{1, 1}, {7, 3}, {1025, 160}}) {
      Tensor x = random(s, t, rng), v = random({s[1]}, t, rng);
      expect_parity([&](Device d) {
        Tensor o = output(s, t, d);
        backend(d).add_row_vector(on(d, x), on(d, v), o);
        return std::vector<Tensor>{o};
      }, {tol(t, 0, 1e-7)}, "add_row_vector " + name(t, s));
    }
}

TEST(CudaElementwise, CopyChannelsBothWays) {
  HDSSL_REQUIRE_CUDA();
  Rng rng(4);
  for (DType t : {DType::F32, DType::F64, DType::I32})
    for (auto [src_shape, cd, c0] : std::vector<std::tuple<Shape, int64_t, int64_t>>{
             {{2, 3, 4, 5, 3}, 7, 2}, {{1, 1, 3, 3, 3}, 1, 0}, {{5, 4}, 9, 5}, {{3, 2, 7}, 2, 0}}) {
      Shape dst_shape = src_shape;
      dst_shape[1] = cd;
      Tensor src = t == DType::I32 ? random_int(src_shape, rng, -100, 100) : random(src_shape, t, rng);
      Tensor dst = t == DType::I32 ? random_int(dst_shape, rng, -100, 100) : random(dst_shape, t, rng);
      expect_parity([&](Device d) {
        Tensor fwd = on(d, dst), back = output(src_shape, t, d), whole = on(d, dst);
        backend(d).copy_channels(on(d, src), fwd, c0, false);  // fwd[:, c0:c0+Cs] = src, the rest kept
        backend(d).copy_channels(back, whole, c0, true);       // back = dst[:, c0:c0+Cs]
        return std::vector<Tensor>{fwd, back};
      }, {Tol{0, 0}}, "copy_channels " + name(t, src_shape) + " into " + shape_str(dst_shape));
    }
}

}  // namespace
}  // namespace hdssl::test
