// The MPI communicator (built only with HDSSL_HAVE_MPI): MPI_COMM_WORLD, one rank per process.
//
// MPI is initialized with MPI_THREAD_FUNNELED: OpenMP threads compute, only the main thread talks to MPI.
// Errors stay MPI_ERRORS_ARE_FATAL (the default), so a failed collective ends the job instead of leaving
// ranks blocked; a rank killed outright (kill -9) is noticed by the launcher, which ends the others.
// Large buffers go in pieces of at most 2^30 elements (MPI counts are int).
// Only the C API: keep Open MPI / MPICH from declaring their deprecated C++ bindings.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#include <unistd.h>
#ifdef HDSSL_HAVE_CUDA_AWARE_MPI
#include <mpi-ext.h>  // MPIX_Query_cuda_support
#endif

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include "dist/communicator.h"
#include "engine/check.h"

namespace hdssl::dist {
namespace {

MPI_Datatype mpi_type(DType t, const char* op) {
  HDSSL_CHECK(is_floating(t)) << op << ": expected float32 or float64 data, got " << dtype_name(t);
  return t == DType::F64 ? MPI_DOUBLE : MPI_FLOAT;
}

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
      owns_ = true;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
#ifdef HDSSL_HAVE_CUDA_AWARE_MPI
    const char* opt_in = std::getenv("HDSSL_MPI_CUDA_AWARE");
    device_buffers_ = opt_in && std::strcmp(opt_in, "1") == 0 && MPIX_Query_cuda_support() == 1;
#endif
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owns_ && !finalized) MPI_Finalize();
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend_name() const override { return "mpi"; }
  void barrier() override { MPI_Barrier(MPI_COMM_WORLD); }
  bool accepts_device_buffers() const override { return device_buffers_; }

  [[noreturn]] void abort(const std::string& message, int code) override {
    // One write(2) of the whole line, then a moment for the launcher to forward it: written in pieces, the
    // launcher's own MPI_ABORT banner could land in the middle of the message.
    const std::string line = "hdssl rank " + std::to_string(rank_) + ": " + message + "\n";
    ssize_t written = ::write(2, line.data(), line.size());
    (void)written;
    ::usleep(200 * 1000);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::exit(code);  // MPI_Abort does not return; this keeps [[noreturn]] honest
  }

  void allreduce_sum(void* data, size_t count, DType dtype) override {
    const MPI_Datatype t = mpi_type(dtype, "allreduce_sum");
    char* p = static_cast<char*>(data);
    const size_t piece = size_t(1) << 30;
    for (size_t done = 0; done < count;) {
      const size_t n = std::min(piece, count - done);
      MPI_Allreduce(MPI_IN_PLACE, p + done * dtype_size(dtype), int(n), t, MPI_SUM, MPI_COMM_WORLD);
      done += n;
    }
  }

  void allgather(const void* send, void* recv, const std::vector<size_t>& counts, DType dtype) override {
    HDSSL_CHECK(counts.size() == size_t(size_)) << "allgather: expected " << size_ << " counts, got " << counts.size();
    const MPI_Datatype t = mpi_type(dtype, "allgather");
    std::vector<int> n(size_), displ(size_);
    size_t total = 0;
    for (int r = 0; r < size_; ++r) {
      HDSSL_CHECK(counts[r] <= size_t(INT_MAX) && total <= size_t(INT_MAX))
          << "allgather: " << total + counts[r] << " elements exceed MPI's int counts";
      n[r] = int(counts[r]);
      displ[r] = int(total);
      total += counts[r];
    }
    MPI_Allgatherv(send, n[rank_], t, recv, n.data(), displ.data(), t, MPI_COMM_WORLD);
  }

  void broadcast(void* data, size_t bytes, int root) override {
    char* p = static_cast<char*>(data);
    const size_t piece = size_t(1) << 30;
    for (size_t done = 0; done < bytes;) {
      const size_t n = std::min(piece, bytes - done);
      MPI_Bcast(p + done, int(n), MPI_BYTE, root, MPI_COMM_WORLD);
      done += n;
    }
  }

 private:
  int rank_ = 0, size_ = 1;
  bool owns_ = false;
  bool device_buffers_ = false;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator() { return std::make_unique<MpiCommunicator>(); }

}  // namespace hdssl::dist
