// --gather-negatives: all_gather_rows() concatenates the rows of every rank's [n_r, D] tensor, in rank
// order, into [sum n_r, D] on every rank, with a gradient.
//
// Scaling. Every rank then computes the same loss L over the union (e.g. InfoNCE of the gathered views, so
// each anchor sees every rank's negatives) and its backward gives every rank the same dL/d(gathered). The
// backward of the gather all-reduce-SUMS that gradient and keeps this rank's rows, so rank r's input
// gradient is N * dL/dx_r (N ranks). The gradient all-reduce (dist/gradient_allreduce.h) then divides the
// parameter gradients by N, which makes them exactly dL/dparams of one process over the union batch, and
// the loss each rank reports is already the union's. (N * dL/dx_r is the same per-rank convention as
// synchronized BatchNorm's: the gradient of the sum of the N ranks' identical losses.)
//
// Collective: every rank must call it (D equal on all ranks; n_r may differ). float32 or float64, any
// device (staged through host memory).
#pragma once
#include "autograd/variable.h"
#include "dist/communicator.h"

namespace hdssl::dist {

Variable all_gather_rows(const Variable& x, Communicator& comm);

}  // namespace hdssl::dist
