// The world communicator of an MPI test binary (set up by mpi_test_main.cpp before the tests run).
#pragma once
#include "dist/communicator.h"

namespace hdssl::test {
dist::Communicator& world();
}
