// The single-process communicator and the choice between it and MPI.
#include "dist/communicator.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "engine/check.h"

namespace hdssl::dist {

#ifdef HDSSL_HAVE_MPI
std::unique_ptr<Communicator> make_mpi_communicator();  // dist/mpi_communicator.cpp
bool mpi_built() { return true; }
#else
bool mpi_built() { return false; }
#endif

void SingleProcessCommunicator::abort(const std::string& message, int code) {
  std::cerr << "hdssl: " << message << std::endl;
  std::exit(code);
}

void SingleProcessCommunicator::allgather(const void* send, void* recv, const std::vector<size_t>& counts,
                                          DType dtype) {
  HDSSL_CHECK(counts.size() == 1) << "allgather: a single process has 1 count, got " << counts.size();
  if (counts[0] > 0 && send != recv) std::memcpy(recv, send, counts[0] * dtype_size(dtype));
}

bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(v)) return true;
  return false;
}

int local_rank() {
  for (const char* v : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID", "PMI_LOCAL_RANK"})
    if (const char* s = std::getenv(v)) return std::atoi(s);
  return 0;
}

int local_size() {
  for (const char* v : {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "PMI_LOCAL_SIZE"})
    if (const char* s = std::getenv(v)) return std::max(1, std::atoi(s));
  return 1;
}

std::unique_ptr<Communicator> make_communicator() {
  if (!launched_by_mpi()) return std::make_unique<SingleProcessCommunicator>();
#ifdef HDSSL_HAVE_MPI
  return make_mpi_communicator();
#else
  throw Error(
      "this process was started by an MPI launcher (mpirun / srun) but hdssl was built without MPI "
      "(-DHDSSL_MPI=OFF or MPI not found): rebuild with -DHDSSL_MPI=ON, or run without mpirun");
#endif
}

}  // namespace hdssl::dist
