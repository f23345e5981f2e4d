// Under mpirun -np N (N >= 2): the gradient all-reduce of a small models::Pretrainer.
//  1. Every rank builds the model from the same seed and takes a different batch (batch r on rank r); the
//     all-reduced gradient equals the mean of the N single-process gradients on those batches, which each
//     rank computes locally (float64, 1e-12), with the default 25 MB bucket and with 4 KB buckets.
//  2. After several clipped Adam steps on different per-rank batches, the parameters hash the same on all
//     ranks (float32 and float64), and in float64 they equal a single process that averages the per-batch
//     gradients itself. Control: without the all-reduce the hashes differ, so the check can fail.
#include <gtest/gtest.h>

#include <memory>

#include "autograd/optim.h"
#include "dist/gradient_allreduce.h"
#include "models/pretrainer.h"
#include "tests/dist/dist_test_util.h"
#include "tests/dist/mpi_test_main.h"
#include "tests/tiny_pretraining.h"

namespace hdssl::test {
namespace {

// Batch `index` of a step (the same index gives the same batch on every rank).
models::PretrainInputs make_batch(uint64_t index, DType t) {
  Rng data = Rng(7).split(index);
  const Shape vs{2, 1, 12, 8, 8};
  uint64_t volume = 0;
  return draw_pretrain_inputs([&] { return random_tensor(vs, data.split(++volume), t, 0, 1); },
                              [&] { return random_voxel_coords(data, 2, 16, 12, 8, 8); });
}

std::vector<std::vector<double>> gradients(const std::vector<Variable>& params) {
  std::vector<std::vector<double>> g;
  for (const Variable& p : params)
    g.push_back(p.grad().defined() ? host_doubles(p.grad()) : std::vector<double>(size_t(p.value().numel()), 0.0));
  return g;
}

// Forward and backward of `model` on `batch`; gradients accumulate into the parameters.
void forward_backward(models::Pretrainer& model, const models::PretrainInputs& batch) {
  models::PretrainLoss l = model.loss(batch);
  l.total.backward();
}

uint64_t batch_index(int step, int rank) { return uint64_t(step) * 1000 + uint64_t(rank); }

}  // namespace

TEST(MpiGradientAllreduce, MeanOverRanksEqualsMeanOfSingleProcessGradients) {
  dist::Communicator& comm = world();
  const int N = comm.size();
  // The reference: each rank computes all N single-process gradients itself.
  std::vector<std::vector<double>> mean;
  for (int r = 0; r < N; ++r) {
    auto ref = tiny_pretrainer(DType::F64);
    forward_backward(*ref, make_batch(batch_index(0, r), DType::F64));
    auto g = gradients(ref->parameters());
    if (mean.empty()) mean = g;
    else
      for (size_t k = 0; k < g.size(); ++k)
        for (size_t i = 0; i < g[k].size(); ++i) mean[k][i] += g[k][i];
  }
  for (auto& g : mean)
    for (double& v : g) v /= double(N);

  for (size_t bucket : {dist::GradientAllreduce::kDefaultBucketBytes, size_t(4096)}) {
    auto model = tiny_pretrainer(DType::F64);
    forward_backward(*model, make_batch(batch_index(0, comm.rank()), DType::F64));
    std::vector<Variable> params = model->parameters();
    const auto local = gradients(params);
    dist::GradientAllreduce ar(comm, bucket);
    ar.all_reduce_mean(params);
    const auto got = gradients(params);
    ASSERT_EQ(got.size(), mean.size());
    double moved = 0;
    for (size_t k = 0; k < got.size(); ++k) {
      expect_close(got[k], mean[k], 1e-12, "bucket " + std::to_string(bucket) + " parameter " + params[k].name());
      moved = std::max(moved, max_abs_diff(got[k], local[k]));
    }
    EXPECT_GT(moved, 1e-6) << "the per-rank gradients were equal: the test would not see a missing all-reduce";
    EXPECT_EQ(ar.last_bytes(), size_t(model->parameter_count()) * 8);
    if (bucket == 4096) EXPECT_GT(ar.last_buckets(), 10);
    else EXPECT_EQ(ar.last_buckets(), 1);
  }
}

TEST(MpiGradientAllreduce, ParametersStayBitwiseIdenticalOverAdamSteps) {
  dist::Communicator& comm = world();
  const int N = comm.size(), steps = 3;
  for (DType t : {DType::F32, DType::F64}) {
    auto model = tiny_pretrainer(t);
    std::vector<Variable> params = model->parameters();
    Adam adam(params);
    dist::GradientAllreduce ar(comm);
    for (int s = 0; s < steps; ++s) {
      forward_backward(*model, make_batch(batch_index(s, comm.rank()), t));
      ar.all_reduce_mean(params);
      adam.step(clip_coefficient(grad_norm(params), 1.0));
      adam.zero_grad();
    }
    EXPECT_TRUE(dist::parameters_identical_across_ranks(comm, params)) << dtype_name(t);
    if (t != DType::F64) continue;

    // float64: the same as one process that averages the N per-batch gradients of every step itself.
    auto ref = tiny_pretrainer(t);
    std::vector<Variable> rp = ref->parameters();
    Adam ref_adam(rp);
    for (int s = 0; s < steps; ++s) {
      std::vector<std::vector<double>> mean;
      for (int r = 0; r < N; ++r) {
        forward_backward(*ref, make_batch(batch_index(s, r), t));
        auto g = gradients(rp);
        zero_grad(rp);
        if (mean.empty()) mean = g;
        else
          for (size_t k = 0; k < g.size(); ++k)
            for (size_t i = 0; i < g[k].size(); ++i) mean[k][i] += g[k][i];
      }
      for (size_t k = 0; k < rp.size(); ++k) {
        for (double& v : mean[k]) v /= double(N);
        rp[k].grad() = Tensor::from_vector(mean[k], rp[k].shape());
      }
      ref_adam.step(clip_coefficient(grad_norm(rp), 1.0));
      ref_adam.zero_grad();
    }
    for (size_t k = 0; k < rp.size(); ++k)
      expect_close(host_doubles(params[k].value()), host_doubles(rp[k].value()), 1e-12, "after Adam: " + rp[k].name());
  }
}

TEST(MpiGradientAllreduce, HashCheckSeesRanksThatDiverged) {
  dist::Communicator& comm = world();
  auto model = tiny_pretrainer(DType::F32);
  std::vector<Variable> params = model->parameters();
  EXPECT_TRUE(dist::parameters_identical_across_ranks(comm, params)) << "same seed, no step yet";
  Adam adam(params);
  forward_backward(*model, make_batch(batch_index(0, comm.rank()), DType::F32));
  adam.step();  // no all-reduce: each rank steps with its own gradient
  EXPECT_FALSE(dist::parameters_identical_across_ranks(comm, params));
}

}  // namespace hdssl::test

namespace hdssl::test {

// The communicator itself: distinct ranks 0..N-1, every rank's value gathered in rank order, a sum, a
// broadcast, and (all ranks on this one machine) local ranks equal to ranks.
TEST(MpiCommunicator, RanksCollectivesAndLocalRanks) {
  dist::Communicator& comm = world();
  const int N = comm.size();
  EXPECT_EQ(comm.backend_name(), "mpi");
  std::vector<double> mine{double(comm.rank()), 10.0 * comm.rank()}, all(size_t(2 * N));
  comm.allgather(mine.data(), all.data(), std::vector<size_t>(size_t(N), 2), DType::F64);
  for (int r = 0; r < N; ++r) {
    EXPECT_EQ(all[size_t(2 * r)], double(r));
    EXPECT_EQ(all[size_t(2 * r + 1)], 10.0 * r);
  }
  std::vector<float> v{1.0f + float(comm.rank()), 0.5f};
  comm.allreduce_sum(v.data(), v.size(), DType::F32);
  EXPECT_EQ(v[0], float(N + N * (N - 1) / 2));
  EXPECT_EQ(v[1], 0.5f * float(N));
  int64_t token = comm.rank() == 0 ? 4242 : -1;
  comm.broadcast(&token, sizeof token, 0);
  EXPECT_EQ(token, 4242);
  EXPECT_EQ(dist::local_rank(), comm.rank());
}

}  // namespace hdssl::test
