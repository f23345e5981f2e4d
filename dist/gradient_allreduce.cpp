// The flat-buffer, bucketed gradient all-reduce and the cross-rank parameter hash.
#include "dist/gradient_allreduce.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "engine/backend.h"
#include "engine/check.h"

namespace hdssl::dist {
namespace {

template <class T>
void divide(void* data, size_t count, int size) {
  T* p = static_cast<T*>(data);
  const T n = T(size);
  const int64_t c = int64_t(count);
#pragma omp parallel for schedule(static) if (c > 65536)
  for (int64_t i = 0; i < c; ++i) p[i] = p[i] / n;  // (a + b) / 2 exactly as a reference mean computes it
}

}  // namespace

GradientAllreduce::GradientAllreduce(Communicator& comm, size_t bucket_bytes)
    : comm_(comm), bucket_bytes_(bucket_bytes) {
  HDSSL_CHECK(bucket_bytes >= 8) << "GradientAllreduce: bucket size must be at least 8 bytes, got " << bucket_bytes;
}

void GradientAllreduce::all_reduce_mean(const std::vector<Variable>& params) {
  last_bytes_ = 0;
  last_buckets_ = 0;
  if (comm_.size() == 1) return;

  // Every rank must pass the same parameters: otherwise MPI would sum unrelated buffers (or wait forever).
  // Rank 0's counts go to all; a rank that differs ends the job with both counts.
  int64_t mine[2] = {int64_t(params.size()), 0};
  for (const Variable& p : params) mine[1] += p.value().numel();
  int64_t root[2] = {mine[0], mine[1]};
  comm_.broadcast(root, sizeof root, 0);
  if (root[0] != mine[0] || root[1] != mine[1])
    comm_.abort("gradient all-reduce: this rank has " + std::to_string(mine[0]) + " parameters with " +
                std::to_string(mine[1]) + " values, rank 0 has " + std::to_string(root[0]) + " with " +
                std::to_string(root[1]) + ": every rank must build the same model");

  // Which parameters have a gradient on some rank.
  std::vector<double> present(params.size());
  for (size_t i = 0; i < params.size(); ++i) present[i] = params[i].grad().defined() ? 1.0 : 0.0;
  comm_.allreduce_sum(present.data(), present.size(), DType::F64);

  for (DType dtype : {DType::F32, DType::F64}) {
    std::vector<Variable> group;
    size_t count = 0;
    for (size_t i = 0; i < params.size(); ++i) {
      Variable p = params[i];
      if (present[i] == 0.0 || p.value().dtype() != dtype) continue;
      if (!p.grad().defined()) p.grad() = Tensor::zeros_like(p.value());
      const Tensor& g = p.grad();
      HDSSL_CHECK(g.dtype() == dtype && g.numel() == p.value().numel() && g.is_contiguous())
          << "all_reduce_mean: gradient of '" << p.name() << "' is " << g.describe() << ", parameter is "
          << p.value().describe();
      count += size_t(g.numel());
      group.push_back(p);
    }
    if (group.empty()) continue;
    const size_t esize = dtype_size(dtype);
    if (reduce_on_device(group, count, dtype)) continue;
    char* flat = static_cast<char*>(staging_.reserve(count * esize));
    size_t off = 0;
    for (const Variable& p : group) {
      const Tensor& g = p.grad();
      backend(g.device()).copy_to_host(flat + off, g.raw(), g.nbytes());
      off += g.nbytes();
    }
    const size_t per_bucket = std::max<size_t>(1, bucket_bytes_ / esize);
    for (size_t done = 0; done < count; done += per_bucket) {
      const size_t n = std::min(per_bucket, count - done);
      comm_.allreduce_sum(flat + done * esize, n, dtype);
      ++last_buckets_;
    }
    if (dtype == DType::F32) divide<float>(flat, count, comm_.size());
    else divide<double>(flat, count, comm_.size());
    off = 0;
    for (const Variable& p : group) {
      Variable q = p;
      Tensor& g = q.grad();
      backend(g.device()).copy_from_host(g.raw(), flat + off, g.nbytes());
      off += g.nbytes();
    }
    for (const Variable& p : group) backend(p.device()).synchronize();
    last_bytes_ += count * esize;
  }
}

// CUDA-aware MPI (opt-in, UNVERIFIED): the flat buffer stays on the GPU and MPI reads it there.
bool GradientAllreduce::reduce_on_device(const std::vector<Variable>& group, size_t count, DType dtype) {
  const Device dev = group.front().device();
  if (!comm_.accepts_device_buffers() || !dev.is_cuda()) return false;
  for (const Variable& p : group)
    if (p.device() != dev) return false;
  Backend& be = backend(dev);
  Tensor flat = Tensor::empty({int64_t(count)}, dtype, dev);
  char* base = static_cast<char*>(flat.raw());
  size_t off = 0;
  for (const Variable& p : group) {
    be.copy_device(base + off, p.grad().raw(), p.grad().nbytes());
    off += p.grad().nbytes();
  }
  be.synchronize();  // MPI reads the buffer outside the backend's stream
  const size_t esize = dtype_size(dtype), per_bucket = std::max<size_t>(1, bucket_bytes_ / esize);
  for (size_t done = 0; done < count; done += per_bucket) {
    comm_.allreduce_sum(base + done * esize, std::min(per_bucket, count - done), dtype);
    ++last_buckets_;
  }
  be.axpby(1.0 / double(comm_.size()), flat, 0.0, flat, flat);
  off = 0;
  for (const Variable& p : group) {
    Variable q = p;
    be.copy_device(q.grad().raw(), base + off, q.grad().nbytes());
    off += q.grad().nbytes();
  }
  be.synchronize();
  last_bytes_ += count * esize;
  return true;
}

uint64_t parameters_hash(const std::vector<Variable>& params) {
  uint64_t h = 0xcbf29ce484222325ULL;
  std::vector<unsigned char> bytes;
  for (const Variable& p : params) {
    const Tensor& v = p.value();
    bytes.resize(v.nbytes());
    if (!bytes.empty()) backend(v.device()).copy_to_host(bytes.data(), v.raw(), v.nbytes());
    for (unsigned char b : bytes) {
      h ^= b;
      h *= 0x100000001b3ULL;
    }
  }
  return h;
}

bool parameters_identical_across_ranks(Communicator& comm, const std::vector<Variable>& params) {
  const uint64_t mine = parameters_hash(params);
  uint64_t root = mine;
  comm.broadcast(&root, sizeof root, 0);
  double differ = root == mine ? 0.0 : 1.0;
  comm.allreduce_sum(&differ, 1, DType::F64);
  return differ == 0.0;
}

}  // namespace hdssl::dist
