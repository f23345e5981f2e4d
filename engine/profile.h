// Per-op profile of the CPU backend: wall time and call count of every backend primitive, by op family
// and direction (forward, backward_data, backward_filter, ...), printable as a table.
//
// Off by default. On from the start when the environment has HDSSL_PROFILE=1 (and then the whole run's
// table is printed to stderr at exit, so any program can be profiled unchanged), or after
// profile::enable(true). When on, backend(cpu) hands out a wrapper that times each call and forwards it
// to the CPU backend; when off, backend(cpu) returns the CPU backend itself, so the only cost is one
// flag test per backend() call. CUDA calls are asynchronous and are not profiled here (the wrapper
// would time the launch, not the kernel).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace hdssl {
class BackendImpl;

namespace profile {

void enable(bool on);  // start / stop collecting (the counts collected so far stay until reset())
bool enabled();
void reset();          // forget every count

struct Row {
  std::string family;  // e.g. "conv3d", "batchnorm", "elementwise", "memory"
  std::string op;      // the backend primitive, e.g. "conv3d_backward_filter"
  int64_t calls = 0;
  double seconds = 0;  // wall time inside the primitive, summed
};
std::vector<Row> rows();  // every primitive called since the last reset, most time first
// The conv3d calls again, one row per (op, shape): family holds the shape "N,Ci->Co,XxYxZ,kK".
std::vector<Row> conv_rows();

// The table: one line per primitive and one subtotal per family, with share of the total, then the
// conv3d calls by shape. Times are
// divided by `per` (e.g. the number of timed steps, to print milliseconds per step); calls likewise.
std::string table(int64_t per = 1);

// The profiling wrapper around `inner` (used by backend(); one per process for the CPU backend).
BackendImpl& wrap(BackendImpl& inner);

}  // namespace profile
}  // namespace hdssl
