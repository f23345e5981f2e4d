// Max-pooling, nearest upsampling and cropping: forward, then the backward closure right under it.
// Max-pool saves only the argmax indices (int32, the output's size), not its input.
#include "autograd/functions.h"

namespace hdssl::ag {

Variable maxpool2(const Variable& x) {
  const Tensor& xv = x.value();
  HDSSL_CHECK(xv.dim() == 5) << "maxpool2: expected a 5D volume, got " << xv.describe();
  const Shape ys{xv.size(0), xv.size(1), (xv.size(2) + 1) / 2, (xv.size(3) + 1) / 2, (xv.size(4) + 1) / 2};
  Tensor y = Tensor::empty(ys, xv.dtype(), xv.device());
  Tensor idx = Tensor::empty(ys, DType::I32, xv.device());
  backend(xv.device()).maxpool2_forward(xv, y, idx);
  const Shape xs = xv.shape();
  return make_result("maxpool2", y, {x}, [idx, xs](const Tensor& g, const std::vector<bool>&, std::vector<Tensor>& gin) {
    gin[0] = Tensor::empty(xs, g.dtype(), g.device());
    backend(g.device()).maxpool2_backward(g, idx, gin[0]);
  });
}

Variable upsample2(const Variable& x) {
  const Tensor& xv = x.value();
  HDSSL_CHECK(xv.dim() == 5) << "upsample2: expected a 5D volume, got " << xv.describe();
  Tensor y = Tensor::empty({xv.size(0), xv.size(1), 2 * xv.size(2), 2 * xv.size(3), 2 * xv.size(4)}, xv.dtype(),
                           xv.device());
  backend(xv.device()).upsample2_forward(xv, y);
  const Shape xs = xv.shape();
  return make_result("upsample2", y, {x}, [xs](const Tensor& g, const std::vector<bool>&, std::vector<Tensor>& gin) {
    gin[0] = Tensor::empty(xs, g.dtype(), g.device());
    backend(g.device()).upsample2_backward(g, gin[0]);
  });
}

Variable crop(const Variable& x, std::array<int64_t, 3> offset, std::array<int64_t, 3> size) {
  const Tensor& xv = x.value();
  HDSSL_CHECK(xv.dim() == 5) << "crop: expected a 5D volume, got " << xv.describe();
  Tensor y = Tensor::empty({xv.size(0), xv.size(1), size[0], size[1], size[2]}, xv.dtype(), xv.device());
  backend(xv.device()).crop_forward(xv, y, offset.data());  // checks that the box fits
  const Shape xs = xv.shape();
  return make_result("crop", y, {x}, [xs, offset](const Tensor& g, const std::vector<bool>&, std::vector<Tensor>& gin) {
    gin[0] = Tensor::empty(xs, g.dtype(), g.device());
    backend(g.device()).crop_backward(g, gin[0], offset.data());
  });
}

}  // namespace hdssl::ag
