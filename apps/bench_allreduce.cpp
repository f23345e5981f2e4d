// bench_allreduce: times the gradient all-reduce of data-parallel pretraining (dist/gradient_allreduce.h).
//
//   mpirun -np 2 ./bench_allreduce [--params 47700000] [--tensors 200] [--bucket-mb 25] [--runs 5]
//                                  [--warmup 1] [--dtype float32|float64]
//
// Every rank holds --params gradient values (float32 by default: the paper's 47.7 M parameters are 191 MB)
// split over --tensors parameter tensors, and calls GradientAllreduce::all_reduce_mean, which packs them
// into one host buffer, all-reduces it in buckets of --bucket-mb and unpacks. Reported on rank 0: the
// median and minimum over --runs timed calls (after --warmup), each started after a barrier and ended by a
// barrier (the slowest rank's time), for the whole call and for the bare MPI all-reduce of the same flat
// buffer (so packing = whole - bare), plus the achieved algorithm bandwidth (bytes / time). Without mpirun
// it runs as one rank, where the call returns at once (nothing to reduce).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "dist/gradient_allreduce.h"
#include "engine/check.h"

using namespace hdssl;

namespace {
double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
}  // namespace

int main(int argc, char** argv) {
  int64_t params = 47'700'000;
  int tensors = 200, runs = 5, warmup = 1;
  double bucket_mb = 25;
  std::string dtype_s = "float32";
  CLI::App app{"bench_allreduce: time the data-parallel gradient all-reduce (run under mpirun)"};
  app.add_option("--params", params, "gradient values per rank")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(1) << 34));
  app.add_option("--tensors", tensors, "parameter tensors they are split into")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  app.add_option("--bucket-mb", bucket_mb, "all-reduce bucket size in MB (2^20 bytes)")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 1e6));
  app.add_option("--runs", runs, "timed calls")->capture_default_str()->check(CLI::Range(1, 1000));
  app.add_option("--warmup", warmup, "untimed calls first")->capture_default_str()->check(CLI::Range(0, 1000));
  app.add_option("--dtype", dtype_s, "float32 or float64")
      ->capture_default_str()
      ->check(CLI::IsMember({"float32", "float64"}));
  CLI11_PARSE(app, argc, argv);
  try {
    auto comm = dist::make_communicator();
    const DType t = dtype_s == "float64" ? DType::F64 : DType::F32;
    std::vector<Variable> ps;
    for (int i = 0; i < tensors; ++i) {
      const int64_t n = params / tensors + (i < params % tensors ? 1 : 0);
      Variable v(Tensor::zeros({n}, t), true, "p" + std::to_string(i));
      v.grad() = Tensor::full({n}, 1.0 + comm->rank(), t);
      ps.push_back(v);
    }
    dist::GradientAllreduce ar(*comm, size_t(bucket_mb * double(1 << 20)));
    std::vector<char> flat(size_t(params) * dtype_size(t));
    std::vector<double> whole, bare;
    for (int i = 0; i < warmup + runs; ++i) {
      comm->barrier();
      double t0 = now_s();
      ar.all_reduce_mean(ps);
      comm->barrier();
      const double w = now_s() - t0;
      comm->barrier();
      t0 = now_s();
      comm->allreduce_sum(flat.data(), size_t(params), t);
      comm->barrier();
      const double b = now_s() - t0;
      if (i >= warmup) {
        whole.push_back(w);
        bare.push_back(b);
      }
    }
    if (comm->size() == 1) {
      std::printf("bench_allreduce: 1 rank (%s): nothing to reduce; run it under mpirun -np N\n",
                  comm->backend_name().c_str());
      return 0;
    }
    if (comm->is_root()) {
      const double mb = double(params) * double(dtype_size(t)) / 1e6;
      std::printf(
          "bench_allreduce: %d rank(s) (%s), %lld %s values = %.1f MB in %d tensors, bucket %.3g MB (%lld MPI calls)\n",
          comm->size(), comm->backend_name().c_str(), (long long)params, dtype_s.c_str(), mb, tensors, bucket_mb,
          (long long)ar.last_buckets());
      std::printf("  all_reduce_mean (pack + all-reduce + divide + unpack): median %.3f s, min %.3f s, %.2f GB/s\n",
                  median(whole), *std::min_element(whole.begin(), whole.end()), mb / 1e3 / median(whole));
      std::printf("  bare MPI all-reduce of one flat buffer:                 median %.3f s, min %.3f s, %.2f GB/s\n",
                  median(bare), *std::min_element(bare.begin(), bare.end()), mb / 1e3 / median(bare));
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_allreduce: %s\n", e.what());
    return 1;
  }
}
