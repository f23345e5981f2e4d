// Under mpirun -np N: --gather-negatives. Rank r holds 3 + r anchor rows of each view (uneven on purpose)
// of a union of sum_r (3 + r) rows; the embeddings are l2_normalize(linear(x, W, b)) and the loss is
// InfoNCE of the gathered views. Every rank's loss equals one process's InfoNCE over the union, the
// all-reduced W and b gradients equal the union's, and each rank's input gradient is N times its rows of
// the union's (dist/gather_rows.h explains the scaling). float64, 1e-12. Control: InfoNCE of the local rows
// alone gives another loss.
#include <gtest/gtest.h>

#include "autograd/functions.h"
#include "dist/gather_rows.h"
#include "dist/gradient_allreduce.h"
#include "tests/dist/dist_test_util.h"
#include "tests/dist/mpi_test_main.h"

namespace hdssl::test {
namespace {

constexpr int64_t kIn = 5, kD = 4;
constexpr double kTau = 0.1;

int64_t rows_of(int r) { return 3 + r; }
int64_t first_row(int r) {
  int64_t s = 0;
  for (int q = 0; q < r; ++q) s += rows_of(q);
  return s;
}

Tensor view_rows(int view, int64_t begin, int64_t end) {
  std::vector<double> v;
  for (int64_t i = begin; i < end; ++i) {
    const auto row = host_doubles(random_tensor({1, kIn}, Rng(50 + uint64_t(view)).split(uint64_t(i))));
    v.insert(v.end(), row.begin(), row.end());
  }
  return Tensor::from_vector(v, {end - begin, kIn});
}

struct Result {
  double loss = 0;
  std::vector<double> xa_grad, xb_grad, w_grad, b_grad;
};

Result run(int64_t begin, int64_t end, dist::Communicator* gather) {
  Variable w(random_tensor({kD, kIn}, Rng(60)), true, "w"), b(random_tensor({kD}, Rng(61)), true, "b");
  Variable xa(view_rows(0, begin, end), true), xb(view_rows(1, begin, end), true);
  Variable za = ag::l2_normalize(ag::linear(xa, w, b)), zb = ag::l2_normalize(ag::linear(xb, w, b));
  if (gather) {
    za = dist::all_gather_rows(za, *gather);
    zb = dist::all_gather_rows(zb, *gather);
  }
  Variable loss = ag::infonce(za, zb, kTau);
  loss.backward();
  std::vector<Variable> params{w, b};
  if (gather) dist::GradientAllreduce(*gather).all_reduce_mean(params);
  return Result{loss.value().item(), host_doubles(xa.grad()), host_doubles(xb.grad()), host_doubles(w.grad()),
                host_doubles(b.grad())};
}

}  // namespace

TEST(MpiGatherNegatives, EqualsOneProcessInfoNCEOverTheUnion) {
  dist::Communicator& comm = world();
  const int N = comm.size(), rank = comm.rank();
  const int64_t begin = first_row(rank), end = begin + rows_of(rank);
  const Result uni = run(0, first_row(N), nullptr);
  const Result local = run(begin, end, nullptr);
  EXPECT_GT(std::fabs(local.loss - uni.loss), 1e-6) << "local negatives already give the union's loss";

  const Result got = run(begin, end, &comm);
  EXPECT_NEAR(got.loss, uni.loss, 1e-12 * std::fabs(uni.loss));
  expect_close(got.w_grad, uni.w_grad, 1e-12, "gradient of W");
  expect_close(got.b_grad, uni.b_grad, 1e-12, "gradient of b");
  for (int view = 0; view < 2; ++view) {
    std::vector<double> want = rows(view == 0 ? uni.xa_grad : uni.xb_grad, kIn, begin, end);
    for (double& v : want) v *= N;
    expect_close(view == 0 ? got.xa_grad : got.xb_grad, want, 1e-12, "input gradient of view " + std::to_string(view));
  }
}

}  // namespace hdssl::test
