// Per-rank random streams and the global numbering of batch items.
//
// Data: pair b of rank r's batch k is global item  r * per_rank_batch + b  of batch k. Feeding that index to
// the loader's rule (pair b of batch k uses Rng(seed).split(k).split(b), data/loader.h) makes the union of
// N ranks' batches exactly the batch of one process with batch N * per_rank_batch and the same seed:
// the run's data does not depend on how the global batch is split, which is what makes "2 ranks equal one
// process over the union" testable and a resume on another rank count well defined (same global batch).
//
// Anything else a rank draws on its own uses stream  rank_stream_id(stream, rank)  = stream + rank * phi
// (mod 2^64, phi = 0x9E3779B97F4A7C15, odd): rank 0 keeps the single-process stream, so a 1-rank job equals
// a plain run, and distinct ranks get distinct streams (multiplication by an odd number is a bijection).
// Model initialization draws from the same stream on every rank (parameters start identical).
#pragma once
#include <cstdint>

#include "engine/random.h"

namespace hdssl::dist {

constexpr uint64_t kRankStreamStride = 0x9E3779B97F4A7C15ULL;

constexpr uint64_t rank_stream_id(uint64_t stream, int rank) { return stream + uint64_t(rank) * kRankStreamStride; }
inline Rng rank_rng(uint64_t seed, uint64_t stream, int rank) { return Rng(seed, rank_stream_id(stream, rank)); }

constexpr int64_t global_batch_item(int rank, int64_t per_rank_batch, int64_t b) {
  return int64_t(rank) * per_rank_batch + b;
}

}  // namespace hdssl::dist
