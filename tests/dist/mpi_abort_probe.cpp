// A probe for how a 2-rank job ends when one rank fails (run by ctest under mpiexec -n 2, see CMakeLists):
//   abort: rank 1 calls Communicator::abort("deliberate abort for the test", 3)
//   kill:  rank 1 sends itself SIGKILL (as `kill -9` would)
//   mismatch: rank 1 passes one more parameter to the gradient all-reduce than rank 0
// Rank 0 meanwhile waits in a barrier that rank 1 never reaches. The job must end (not hang: ctest's
// timeout fails it) with the message, and rank 0 must never print "rank 0 passed the barrier".
#include <csignal>
#include <cstdio>
#include <cstring>

#include "dist/communicator.h"
#include "dist/gradient_allreduce.h"

int main(int argc, char** argv) {
  const bool known = argc == 2 && (std::strcmp(argv[1], "abort") == 0 || std::strcmp(argv[1], "kill") == 0 ||
                                   std::strcmp(argv[1], "mismatch") == 0);
  if (!known) {
    std::fprintf(stderr, "usage: mpiexec -n 2 %s abort|kill|mismatch\n", argv[0]);
    return 2;
  }
  auto comm = hdssl::dist::make_communicator();
  if (comm->size() < 2) {
    std::fprintf(stderr, "%s: run me under mpiexec -n 2\n", argv[0]);
    return 2;
  }
  if (std::strcmp(argv[1], "mismatch") == 0) {
    std::vector<hdssl::Variable> params;
    for (int i = 0; i < 2 + comm->rank(); ++i) {
      params.emplace_back(hdssl::Tensor::zeros({3}), true);
      params.back().grad() = hdssl::Tensor::zeros({3});
    }
    hdssl::dist::GradientAllreduce(*comm).all_reduce_mean(params);
  } else if (comm->rank() == 1) {
    if (std::strcmp(argv[1], "abort") == 0) comm->abort("deliberate abort for the test", 3);
    std::raise(SIGKILL);
  }
  comm->barrier();
  std::printf("rank %d passed the barrier\n", comm->rank());
  return 0;
}
