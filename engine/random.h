// Seeded, counter-based random numbers. The value drawn at (seed, stream, counter) is fixed, so a
// result never depends on how many threads draw: give each work item its own stream (split) instead of
// sharing one generator. The whole state is three integers, saved in checkpoints.
#pragma once
#include <cstdint>

namespace hdssl {

struct RngState {
  uint64_t seed = 0, stream = 0, counter = 0;
};

class Rng {
 public:
  explicit Rng(uint64_t seed = 0, uint64_t stream = 0) : s_{seed, stream, 0} {}
  explicit Rng(const RngState& s) : s_(s) {}

  uint64_t next_u64();                       // the counter-th value of (seed, stream); counter += 1
  uint32_t next_u32() { return uint32_t(next_u64() >> 32); }
  double uniform();                          // [0, 1), 53 bits
  float uniformf() { return float(uniform() * (1.0 - 1e-7)); }  // [0, 1) in float
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  double normal();                           // standard normal (Box-Muller, two draws)
  int64_t randint(int64_t lo, int64_t hi);   // uniform integer in [lo, hi); requires lo < hi
  bool bernoulli(double p) { return uniform() < p; }
  Rng split(uint64_t child) const;           // an independent stream derived from this one and `child`

  const RngState& state() const { return s_; }
  void set_state(const RngState& s) { s_ = s; }

 private:
  RngState s_;
};

}  // namespace hdssl
