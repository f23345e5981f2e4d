// Communicator: the ranks of a data-parallel job and the few collectives hdssl needs.
//
// Two implementations: MPI (dist/mpi_communicator.cpp, built when CMake found MPI) and the trivial single
// process (size 1: every collective is a copy or nothing). make_communicator() picks MPI only when the
// program was started by a launcher (mpirun, mpiexec, srun); a plain ./pretrain never initializes MPI.
//
// Every collective is collective: all ranks call it, in the same order, with the same counts (allgather:
// each rank its own count, known to all through `counts`). Buffers are host memory; GPU tensors are staged
// through pinned host buffers by the callers (dist/host_staging.h).
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "engine/dtype.h"

namespace hdssl::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend_name() const = 0;  // "single", "mpi"

  virtual void barrier() = 0;
  // Ends the whole job: prints "hdssl rank R: message" to stderr and makes every rank exit with `code`.
  [[noreturn]] virtual void abort(const std::string& message, int code = 1) = 0;

  // data[i] = sum over ranks of data[i], in place; dtype F32 or F64.
  virtual void allreduce_sum(void* data, size_t count, DType dtype) = 0;
  // recv = concatenation over ranks r = 0..size-1 of rank r's `counts[r]` elements; send holds counts[rank()].
  virtual void allgather(const void* send, void* recv, const std::vector<size_t>& counts, DType dtype) = 0;
  // Copies root's `bytes` bytes into every rank's data.
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  // True when allreduce_sum may be given CUDA device memory: only a CUDA-aware MPI build
  // (HDSSL_HAVE_CUDA_AWARE_MPI), whose runtime confirms it, with HDSSL_MPI_CUDA_AWARE=1 set. UNVERIFIED:
  // no machine with several GPUs has run it yet.
  virtual bool accepts_device_buffers() const { return false; }

  bool is_root() const { return rank() == 0; }
};

// size 1, rank 0: allreduce leaves data as it is, allgather copies, abort exits the process.
class SingleProcessCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend_name() const override { return "single"; }
  void barrier() override {}
  [[noreturn]] void abort(const std::string& message, int code = 1) override;
  void allreduce_sum(void*, size_t, DType) override {}
  void allgather(const void* send, void* recv, const std::vector<size_t>& counts, DType dtype) override;
  void broadcast(void*, size_t, int) override {}
};

// True when this build has MPI (CMake's HDSSL_MPI found it).
bool mpi_built();
// True when the environment says a launcher started this process as one rank of several (Open MPI's
// OMPI_COMM_WORLD_SIZE, PMIx's PMIX_RANK, MPICH/Hydra's PMI_SIZE, SLURM srun's PMI/PMIx variables).
bool launched_by_mpi();
// This process's index among the ranks on its node, from the launcher's environment (Open MPI's
// OMPI_COMM_WORLD_LOCAL_RANK, SLURM's SLURM_LOCALID, MPICH's MPI_LOCALRANKID); 0 when none is set. With
// CUDA, rank-local GPU = local_rank() % device count.
int local_rank();
// The number of ranks on this node, from the launcher's environment (Open MPI's OMPI_COMM_WORLD_LOCAL_SIZE,
// MPICH's MPI_LOCALNRANKS, PMI_LOCAL_SIZE); 1 when none is set (SLURM: give --cpus-per-task instead).
int local_size();
// MPI when built and launched_by_mpi(), else the single process. Throws hdssl::Error when the process was
// launched by mpirun but this build has no MPI (running N copies of a single-process run would silently
// write the same run folder N times). The MPI communicator finalizes MPI when destroyed.
std::unique_ptr<Communicator> make_communicator();

}  // namespace hdssl::dist
