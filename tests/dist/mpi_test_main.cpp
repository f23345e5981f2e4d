// main() of the MPI test binaries: run under `mpirun -np 2` by ctest. Every rank runs every test (the tests
// are collective); rank 0 prints the usual GoogleTest report, the others only their failures, and the exit
// code is non-zero on any rank that failed, which makes mpirun fail. Run without a launcher (size 1) the
// binary refuses: these tests mean nothing on one rank.
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>

#include "tests/dist/mpi_test_main.h"

namespace hdssl::test {
namespace {
std::unique_ptr<dist::Communicator> g_world;

class FailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (r.failed())
      std::fprintf(stderr, "[rank %d] %s:%d: failure\n%s\n", rank_, r.file_name() ? r.file_name() : "?",
                   r.line_number(), r.summary());
  }

 private:
  int rank_;
};
}  // namespace

dist::Communicator& world() { return *g_world; }
}  // namespace hdssl::test

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  hdssl::test::g_world = hdssl::dist::make_communicator();
  auto& w = *hdssl::test::g_world;
  if (w.size() < 2) {
    std::fprintf(stderr, "%s: run me with mpirun -np 2 (got %d rank, backend %s)\n", argv[0], w.size(),
                 w.backend_name().c_str());
    return 2;
  }
  if (w.rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new hdssl::test::FailurePrinter(w.rank()));
  }
  const int rc = RUN_ALL_TESTS();
  w.barrier();
  hdssl::test::g_world.reset();  // MPI_Finalize
  return rc;
}
