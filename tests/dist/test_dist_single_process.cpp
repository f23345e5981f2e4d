// tests/dist without MPI: what a plain (single-process) run sees.
//  - make_communicator() without a launcher is the single process, and its collectives are identities;
//  - the gradient all-reduce on one rank changes nothing;
//  - synchronized BatchNorm (the hook in autograd/batchnorm_sync.h) with a reducer that sums over one
//    process equals the per-process batch norm (outputs, gradients, running statistics) and passes the
//    float64 finite-difference gradient check, 5D and 2D;
//  - all_gather_rows on one rank is the identity with the identity gradient (gradient check);
//  - the per-rank stream ids keep rank 0's stream and differ between ranks.
#include <gtest/gtest.h>

#include <cstdlib>
#include <set>

#include "autograd/functions.h"
#include "autograd/gradcheck.h"
#include "dist/gather_rows.h"
#include "dist/gradient_allreduce.h"
#include "dist/rank_streams.h"
#include "dist/sync_batchnorm.h"
#include "tests/dist/dist_test_util.h"

namespace hdssl::test {

TEST(DistSingleProcess, WithoutALauncherTheCommunicatorIsTheSingleProcess) {
  ASSERT_FALSE(dist::launched_by_mpi()) << "this test must run without mpirun";
  auto comm = dist::make_communicator();
  EXPECT_EQ(comm->backend_name(), "single");
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->size(), 1);
  std::vector<double> v{1.5, -2.0}, out(2);
  comm->allreduce_sum(v.data(), v.size(), DType::F64);
  EXPECT_EQ(v, (std::vector<double>{1.5, -2.0}));
  comm->allgather(v.data(), out.data(), {2}, DType::F64);
  EXPECT_EQ(out, v);
  comm->barrier();
}

TEST(DistSingleProcess, GradientAllreduceOnOneRankChangesNothing) {
  dist::SingleProcessCommunicator comm;
  Variable p(random_tensor({7, 3}, Rng(1)), true, "p"), q(random_tensor({5}, Rng(2), DType::F32), true, "q");
  p.grad() = random_tensor({7, 3}, Rng(3));
  const auto before = host_doubles(p.grad());
  dist::GradientAllreduce ar(comm, 16);
  ar.all_reduce_mean({p, q});
  EXPECT_EQ(host_doubles(p.grad()), before);
  EXPECT_FALSE(q.grad().defined());
  EXPECT_EQ(ar.last_bytes(), 0u);
}

namespace {
void check_synced_batchnorm(const Shape& xshape, uint64_t seed) {
  const int64_t C = xshape[1];
  dist::SingleProcessCommunicator comm;
  auto make = [&](bool sync) {
    Variable x(random_tensor(xshape, Rng(seed), DType::F64, -2.0, 3.0), true);
    Variable gamma(random_tensor({C}, Rng(seed + 1), DType::F64, 0.5, 1.5), true),
        beta(random_tensor({C}, Rng(seed + 2)), true);
    Tensor rm = random_tensor({C}, Rng(seed + 3)), rv = random_tensor({C}, Rng(seed + 4), DType::F64, 0.5, 2.0);
    std::unique_ptr<dist::SyncBatchNormScope> scope;
    if (sync) scope = std::make_unique<dist::SyncBatchNormScope>(comm);
    Variable y = ag::batchnorm(x, gamma, beta, rm, rv, true);
    ag::sum(ag::mul(y, Variable(random_tensor(xshape, Rng(seed + 5))))).backward();
    return std::vector<std::vector<double>>{host_doubles(y.value()),    host_doubles(x.grad()),
                                            host_doubles(gamma.grad()), host_doubles(beta.grad()),
                                            host_doubles(rm),           host_doubles(rv)};
  };
  const auto plain = make(false), synced = make(true);
  const char* what[] = {"y", "dx", "dgamma", "dbeta", "running mean", "running var"};
  for (size_t k = 0; k < plain.size(); ++k) expect_close(synced[k], plain[k], 1e-13, what[k]);
  EXPECT_EQ(batchnorm_stats_reducer(), nullptr) << "the scope must uninstall its reducer";

  dist::SyncBatchNormScope scope(comm);
  Tensor rm = Tensor::zeros({C}, DType::F64), rv = Tensor::full({C}, 1.0, DType::F64);
  const GradCheckResult r =
      gradcheck([&](const std::vector<Variable>& v) { return ag::batchnorm(v[0], v[1], v[2], rm, rv, true); },
                {Variable(random_tensor(xshape, Rng(seed + 6), DType::F64, -2.0, 3.0), true),
                 Variable(random_tensor({C}, Rng(seed + 7), DType::F64, 0.5, 1.5), true),
                 Variable(random_tensor({C}, Rng(seed + 8)), true)});
  std::printf("[gradcheck] synced batchnorm %s: max relative error %.3g\n", xshape.size() == 5 ? "5D" : "2D",
              r.max_rel_error);
  EXPECT_LT(r.max_rel_error, 1e-6) << r.worst;
}
}  // namespace

TEST(DistSingleProcess, SyncedBatchNorm5dEqualsBatchNormAndPassesGradcheck) {
  check_synced_batchnorm({2, 3, 3, 4, 2}, 70);
}
TEST(DistSingleProcess, SyncedBatchNorm2dEqualsBatchNormAndPassesGradcheck) { check_synced_batchnorm({6, 5}, 80); }

TEST(DistSingleProcess, GatherRowsOnOneRankIsTheIdentityAndPassesGradcheck) {
  dist::SingleProcessCommunicator comm;
  Variable x(random_tensor({4, 3}, Rng(90)), true);
  EXPECT_EQ(host_doubles(dist::all_gather_rows(x, comm).value()), host_doubles(x.value()));
  const GradCheckResult r = gradcheck(
      [&](const std::vector<Variable>& v) {
        return ag::infonce(ag::l2_normalize(dist::all_gather_rows(v[0], comm)), ag::l2_normalize(v[1]), 0.5);
      },
      {x, Variable(random_tensor({4, 3}, Rng(91)), true)});
  EXPECT_LT(r.max_rel_error, 1e-6) << r.worst;
}

TEST(DistSingleProcess, RankStreamsKeepRankZeroAndDifferBetweenRanks) {
  EXPECT_EQ(dist::rank_stream_id(0x5eed, 0), 0x5eedu);
  std::set<uint64_t> ids;
  for (int r = 0; r < 4096; ++r) ids.insert(dist::rank_stream_id(1, r));
  EXPECT_EQ(ids.size(), 4096u);
  EXPECT_NE(dist::rank_rng(3, 1, 1).next_u64(), dist::rank_rng(3, 1, 0).next_u64());
  EXPECT_EQ(dist::global_batch_item(2, 4, 1), 9);
}

}  // namespace hdssl::test
