// 3D convolution: forward, then the backward closure right under it. The closure saves the input and the
// weight (for the filter and data gradients); the bias gradient is the per-channel sum of dy. The data
// gradient is skipped when the input needs none (the stem conv's input is the image itself).
#include "autograd/autocast.h"
#include "autograd/functions.h"

namespace hdssl::ag {

Variable conv3d(const Variable& x_in, const Variable& w_in, const Variable& b_in, int pad) {
  const std::vector<Variable> in = autocast(OpClass::LowPrecision, {x_in, w_in, b_in});
  const Variable &x = in[0], &w = in[1], &b = in[2];
  HDSSL_CHECK(x.value().dim() == 5 && w.value().dim() == 5 && x.size(1) == w.size(1))
      << "conv3d: input " << x.value().describe() << " and weight " << w.value().describe();
  const Conv3dArgs args{pad};
  const Tensor xv = x.value(), wv = w.value();
  Tensor y = Tensor::empty({xv.size(0), wv.size(0), xv.size(2), xv.size(3), xv.size(4)}, xv.dtype(), xv.device());
  backend(xv.device()).conv3d_forward(xv, wv, b.defined() ? b.value() : Tensor(), y, args);
  std::vector<Variable> inputs{x, w};
  if (b.defined()) inputs.push_back(b);
  return make_result("conv3d", y, std::move(inputs),
                     [xv, wv, args](const Tensor& g, const std::vector<bool>& needs, std::vector<Tensor>& gin) {
                       Backend& be = backend(g.device());
                       if (needs[0]) {
                         gin[0] = Tensor::empty_like(xv);
                         be.conv3d_backward_data(g, wv, gin[0], args);
                       }
                       if (needs[1]) {
                         gin[1] = Tensor::empty_like(wv);
                         be.conv3d_backward_filter(xv, g, gin[1], args);
                       }
                       if (needs.size() > 2 && needs[2]) {
                         gin[2] = Tensor::empty({wv.size(0)}, g.dtype(), g.device());
                         be.channel_sum(g, gin[2]);
                       }
                     });
}

}  // namespace hdssl::ag
