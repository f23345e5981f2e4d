// all_gather_rows: forward is an allgather of rows, backward an all-reduce-sum and this rank's slice.
#include "dist/gather_rows.h"

#include <cstring>

#include "engine/backend.h"
#include "engine/check.h"

namespace hdssl::dist {

Variable all_gather_rows(const Variable& x, Communicator& comm) {
  const Tensor xv = x.value();
  HDSSL_CHECK(xv.dim() == 2 && is_floating(xv.dtype()))
      << "all_gather_rows: expected float rows [n, D], got " << xv.describe();
  const int size = comm.size(), rank = comm.rank();
  const int64_t D = xv.size(1);
  // Every rank's (rows, D), as doubles.
  std::vector<double> shape_mine{double(xv.size(0)), double(D)}, shapes(static_cast<size_t>(2 * size));
  comm.allgather(shape_mine.data(), shapes.data(), std::vector<size_t>(size_t(size), 2), DType::F64);
  std::vector<size_t> counts(static_cast<size_t>(size));
  int64_t total = 0, offset = 0;
  for (int r = 0; r < size; ++r) {
    HDSSL_CHECK(int64_t(shapes[2 * r + 1]) == D) << "all_gather_rows: rank " << r << " has rows of width "
                                                 << shapes[2 * r + 1] << ", rank " << rank << " of width " << D;
    const int64_t n = int64_t(shapes[2 * r]);
    if (r == rank) offset = total;
    counts[size_t(r)] = size_t(n * D);
    total += n;
  }

  const Tensor host = xv.to(Device::cpu()).clone();
  Tensor gathered_host = Tensor::empty({total, D}, xv.dtype(), Device::cpu());
  comm.allgather(host.raw(), gathered_host.raw(), counts, xv.dtype());
  Tensor gathered = gathered_host.to(xv.device());

  const int64_t rows = xv.size(0);
  Communicator* cp = &comm;
  return make_result(
      "all_gather_rows", gathered, {x},
      [cp, offset, rows, D, total](const Tensor& g, const std::vector<bool>& needs, std::vector<Tensor>& gin) {
        // All-reduce even when this rank needs nothing: it is a collective.
        Tensor h = g.to(Device::cpu()).clone();
        cp->allreduce_sum(h.raw(), size_t(total * D), h.dtype());
        if (!needs[0]) return;
        Tensor mine = Tensor::empty({rows, D}, h.dtype(), Device::cpu());
        if (rows > 0)
          std::memcpy(mine.raw(), static_cast<const char*>(h.raw()) + size_t(offset * D) * dtype_size(h.dtype()),
                      mine.nbytes());
        gin[0] = mine.to(g.device());
      });
}

}  // namespace hdssl::dist
