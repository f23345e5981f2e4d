// The per-op profile (engine/profile.h): off, backend(cpu) is the CPU backend itself and nothing is
// counted; on, every primitive call is counted under its family and op, and results are unchanged.
#include <gtest/gtest.h>

#include "engine/backend.h"
#include "engine/profile.h"
#include "engine/tensor.h"

using namespace hdssl;

namespace {
const profile::Row* find(const std::vector<profile::Row>& rows, const std::string& op) {
  for (const profile::Row& r : rows)
    if (r.op == op) return &r;
  return nullptr;
}
}  // namespace

TEST(Profile, CountsCallsByOpOnlyWhenEnabled) {
  const bool was = profile::enabled();
  profile::enable(false);
  profile::reset();
  Backend& plain = backend(Device::cpu());
  Tensor x = Tensor::full({2, 3, 4, 4, 4}, -1.0), y = Tensor::empty_like(x);
  Tensor w = Tensor::full({5, 3, 3, 3, 3}, 0.5), out = Tensor::empty({2, 5, 4, 4, 4});
  plain.relu_forward(x, y);
  EXPECT_TRUE(profile::rows().empty()) << "nothing is counted while the profile is off";

  profile::enable(true);
  Backend& timed = backend(Device::cpu());
  EXPECT_NE(&timed, &plain) << "on, backend(cpu) is the profiling wrapper";
  EXPECT_EQ(timed.device(), Device::cpu());
  for (int i = 0; i < 3; ++i) timed.relu_forward(x, y);
  timed.conv3d_forward(x, w, Tensor(), out, Conv3dArgs{});
  timed.conv3d_forward(x, w, Tensor(), out, Conv3dArgs{});
  Tensor dw = Tensor::empty_like(w);
  timed.conv3d_backward_filter(x, out, dw, Conv3dArgs{});
  profile::enable(false);
  timed.relu_forward(x, y);  // a held wrapper still forwards, but counts nothing once the profile is off
  const std::vector<profile::Row> rows = profile::rows();

  const profile::Row* relu = find(rows, "relu_forward");
  const profile::Row* fwd = find(rows, "conv3d_forward");
  const profile::Row* bwf = find(rows, "conv3d_backward_filter");
  ASSERT_TRUE(relu && fwd && bwf);
  EXPECT_EQ(relu->family, "elementwise");
  EXPECT_EQ(relu->calls, 3);
  EXPECT_EQ(fwd->family, "conv3d");
  EXPECT_EQ(fwd->calls, 2);
  EXPECT_EQ(bwf->calls, 1);
  EXPECT_GT(fwd->seconds, 0.0);
  EXPECT_EQ(find(rows, "conv3d_backward_data"), nullptr);
  // Results through the wrapper are the backend's: relu of -1 is 0, conv of -1 * 0.5 over 3 channels x 27 taps is -40.5
  // at an interior voxel.
  EXPECT_EQ(y.to_vector<float>()[0], 0.f);
  EXPECT_FLOAT_EQ(out.to_vector<float>()[(((0 * 5 + 2) * 4 + 1) * 4 + 1) * 4 + 1], -40.5f);

  const std::string t = profile::table();
  EXPECT_NE(t.find("conv3d_forward"), std::string::npos);
  EXPECT_NE(t.find("total"), std::string::npos);
  profile::reset();
  EXPECT_TRUE(profile::rows().empty());
  profile::enable(was);
}
