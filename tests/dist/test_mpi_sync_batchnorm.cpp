// Under mpirun -np N: --sync-bn. Rank r holds items [2r, 2r + 2) of a union batch of 2N items; the
// network is conv3d -> BatchNorm -> relu (volumes) or linear -> BatchNorm -> sigmoid (rows), the loss the
// MSE against a fixed target (a mean over the rank's items). With dist::SyncBatchNormScope every rank's
// output equals its slice of one process's output over the union batch, the running statistics equal the
// union's, the all-reduced parameter gradients equal the union's, and the input gradient is N times the
// union's (the convention of autograd/batchnorm_sync.h). float64, 1e-12. Control: without the scope the
// outputs differ from the union's.
// The same through every BatchNorm of a small models::Pretrainer (backbone and projection head, 5D and 2D):
// with the scope, each rank's voxel embeddings equal its rows of one process's embeddings over the union,
// and the all-reduced gradients of an MSE on them equal the union's.
#include <gtest/gtest.h>

#include <memory>

#include "autograd/functions.h"
#include "dist/gradient_allreduce.h"
#include "dist/sync_batchnorm.h"
#include "models/pretrainer.h"
#include "tests/dist/dist_test_util.h"
#include "tests/dist/mpi_test_main.h"
#include "tests/tiny_pretraining.h"

namespace hdssl::test {
namespace {

constexpr int64_t kItemsPerRank = 2, kIn = 2, kC = 3;

// Items [begin, end) of the union batch: input and target, each item drawn from its own stream.
struct Data {
  Tensor x, target;
};
Data items(bool volumes, int64_t begin, int64_t end) {
  std::vector<double> x, t;
  for (int64_t i = begin; i < end; ++i) {
    const Shape xs = volumes ? Shape{1, kIn, 5, 4, 3} : Shape{1, kIn};
    const Shape ts = volumes ? Shape{1, kC, 5, 4, 3} : Shape{1, kC};
    const auto xi = host_doubles(random_tensor(xs, Rng(31).split(uint64_t(i)), DType::F64, -1.0, 2.0));
    const auto ti = host_doubles(random_tensor(ts, Rng(32).split(uint64_t(i)), DType::F64, 0.0, 1.0));
    x.insert(x.end(), xi.begin(), xi.end());
    t.insert(t.end(), ti.begin(), ti.end());
  }
  const int64_t n = end - begin;
  return volumes ? Data{Tensor::from_vector(x, {n, kIn, 5, 4, 3}), Tensor::from_vector(t, {n, kC, 5, 4, 3})}
                 : Data{Tensor::from_vector(x, {n, kIn}), Tensor::from_vector(t, {n, kC})};
}

struct Net {
  Variable w, b, gamma, beta;
  Tensor running_mean, running_var;
  explicit Net(bool volumes) {
    const Shape ws = volumes ? Shape{kC, kIn, 3, 3, 3} : Shape{kC, kIn};
    w = Variable(random_tensor(ws, Rng(41)), true, "w");
    b = Variable(random_tensor({kC}, Rng(42)), true, "b");
    gamma = Variable(random_tensor({kC}, Rng(43), DType::F64, 0.5, 1.5), true, "gamma");
    beta = Variable(random_tensor({kC}, Rng(44)), true, "beta");
    running_mean = random_tensor({kC}, Rng(45));
    running_var = random_tensor({kC}, Rng(46), DType::F64, 0.5, 2.0);
  }
  std::vector<Variable> params() const { return {w, b, gamma, beta}; }
};

struct Result {
  std::vector<double> y, x_grad, running_mean, running_var;
  std::vector<std::vector<double>> grads;
  double loss = 0;
};

// One forward + backward of the net on `d` (the parameter gradients all-reduced when `comm` is given).
Result run(bool volumes, const Data& d, dist::Communicator* comm) {
  Net net(volumes);
  Variable x(d.x, true, "x");
  Variable pre = volumes ? ag::conv3d(x, net.w, net.b, 1) : ag::linear(x, net.w, net.b);
  Variable y = ag::batchnorm(pre, net.gamma, net.beta, net.running_mean, net.running_var, true);
  Variable act = volumes ? ag::relu(y) : ag::sigmoid(y);
  Variable loss = ag::mse(act, d.target);
  loss.backward();
  std::vector<Variable> params = net.params();
  if (comm) dist::GradientAllreduce(*comm).all_reduce_mean(params);
  Result r;
  r.y = host_doubles(y.value());
  r.x_grad = host_doubles(x.grad());
  r.running_mean = host_doubles(net.running_mean);
  r.running_var = host_doubles(net.running_var);
  for (const Variable& p : params) r.grads.push_back(host_doubles(p.grad()));
  r.loss = loss.value().item();
  return r;
}

void check(bool volumes) {
  dist::Communicator& comm = world();
  const int N = comm.size(), rank = comm.rank();
  const int64_t begin = rank * kItemsPerRank, end = begin + kItemsPerRank;
  const int64_t per_item = volumes ? kC * 5 * 4 * 3 : kC, per_item_in = volumes ? kIn * 5 * 4 * 3 : kIn;

  const Result uni = run(volumes, items(volumes, 0, N * kItemsPerRank), nullptr);  // one process, union batch
  const Data mine = items(volumes, begin, end);
  const Result local = run(volumes, mine, nullptr);  // control: per-rank statistics
  EXPECT_GT(max_abs_diff(local.y, rows(uni.y, per_item, begin, end)), 1e-3) << "per-rank BN already equals the union";

  Result sync;
  {
    dist::SyncBatchNormScope scope(comm);
    sync = run(volumes, mine, &comm);
  }
  expect_close(sync.y, rows(uni.y, per_item, begin, end), 1e-12, "BN output");
  expect_close(sync.running_mean, uni.running_mean, 1e-12, "running mean");
  expect_close(sync.running_var, uni.running_var, 1e-12, "running var");
  const char* names[] = {"w", "b", "gamma", "beta"};
  for (size_t k = 0; k < 4; ++k)
    expect_close(sync.grads[k], uni.grads[k], 1e-12, std::string("gradient of ") + names[k]);
  std::vector<double> want_x = rows(uni.x_grad, per_item_in, begin, end);
  for (double& v : want_x) v *= N;
  expect_close(sync.x_grad, want_x, 1e-12, "input gradient (N times the union's)");
}

}  // namespace

TEST(MpiSyncBatchNorm, VolumesEqualOneProcessOverTheUnionBatch) { check(true); }

namespace {
constexpr int64_t kVoxels = 6;
// Items [begin, end) of the union: patches [n,1,8,8,8], voxel coordinates [n,kVoxels,3], targets
// [n*kVoxels, embed], each item from its own stream.
struct EmbedData {
  Tensor view, coords, target;
};
EmbedData embed_items(int64_t begin, int64_t end, int64_t embed_dim) {
  std::vector<double> v, t;
  std::vector<int32_t> c;
  for (int64_t i = begin; i < end; ++i) {
    Rng rng = Rng(33).split(uint64_t(i));
    const auto vi = host_doubles(random_tensor({1, 1, 8, 8, 8}, rng.split(1), DType::F64, 0.0, 1.0));
    const auto ti = host_doubles(random_tensor({kVoxels, embed_dim}, rng.split(2), DType::F64, -0.3, 0.3));
    v.insert(v.end(), vi.begin(), vi.end());
    t.insert(t.end(), ti.begin(), ti.end());
    Rng rc = rng.split(3);
    for (int k = 0; k < 3 * kVoxels; ++k) c.push_back(int32_t(rc.randint(0, 8)));
  }
  const int64_t n = end - begin;
  return {Tensor::from_vector(v, {n, 1, 8, 8, 8}), Tensor::from_vector(c, {n, kVoxels, 3}),
          Tensor::from_vector(t, {n * kVoxels, embed_dim})};
}

struct EmbedResult {
  std::vector<double> z;
  std::vector<std::vector<double>> grads;
};
EmbedResult embed_step(const EmbedData& d, dist::Communicator* comm) {
  const std::unique_ptr<models::Pretrainer> model = tiny_pretrainer(DType::F64);
  Variable z = model->embed(d.view, d.coords);
  ag::mse(z, d.target).backward();
  std::vector<Variable> params = model->parameters();
  if (comm) dist::GradientAllreduce(*comm).all_reduce_mean(params);
  EmbedResult r{host_doubles(z.value()), {}};
  for (const Variable& p : params) r.grads.push_back(host_doubles(p.grad()));
  return r;
}
}  // namespace

TEST(MpiSyncBatchNorm, PretrainerEmbeddingsEqualOneProcessOverTheUnionBatch) {
  dist::Communicator& comm = world();
  const int N = comm.size(), rank = comm.rank();
  const int64_t per_rank = 2, embed_dim = 8, begin = rank * per_rank, end = begin + per_rank;
  const EmbedResult uni = embed_step(embed_items(0, N * per_rank, embed_dim), nullptr);
  const EmbedData mine = embed_items(begin, end, embed_dim);
  const EmbedResult local = embed_step(mine, nullptr);
  const std::vector<double> want = rows(uni.z, embed_dim, begin * kVoxels, end * kVoxels);
  EXPECT_GT(max_abs_diff(local.z, want), 1e-3) << "per-rank BN already equals the union";
  EmbedResult sync;
  {
    dist::SyncBatchNormScope scope(comm);
    sync = embed_step(mine, &comm);
  }
  expect_close(sync.z, want, 1e-12, "embeddings");
  ASSERT_EQ(sync.grads.size(), uni.grads.size());
  for (size_t k = 0; k < uni.grads.size(); ++k)
    expect_close(sync.grads[k], uni.grads[k], 1e-12, "gradient of parameter " + std::to_string(k));
}
TEST(MpiSyncBatchNorm, RowsEqualOneProcessOverTheUnionBatch) { check(false); }

}  // namespace hdssl::test
