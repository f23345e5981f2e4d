#include "engine/random.h"

#include <cmath>

#include "engine/check.h"

namespace hdssl {
namespace {
// SplitMix64's finaliser: a strong 64-bit mix. Hashing (key, counter) makes the generator counter-based.
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
}  // namespace

uint64_t Rng::next_u64() {
  uint64_t key = mix64(s_.seed * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL) ^ mix64(s_.stream + 0x1234567ULL);
  return mix64(key + (s_.counter++) * 0x9e3779b97f4a7c15ULL);
}

double Rng::uniform() { return double(next_u64() >> 11) * (1.0 / 9007199254740992.0); }

double Rng::normal() {
  double u1 = uniform(), u2 = uniform();
  if (u1 < 1e-300) u1 = 1e-300;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

int64_t Rng::randint(int64_t lo, int64_t hi) {
  HDSSL_CHECK(lo < hi) << "randint: empty range [" << lo << ", " << hi << ")";
  uint64_t span = uint64_t(hi - lo);
  return lo + int64_t(next_u64() % span);  // bias < span / 2^64: negligible for our ranges
}

Rng Rng::split(uint64_t child) const {
  return Rng(mix64(s_.seed ^ mix64(s_.stream + 0x51ed2701ULL)) + s_.counter, mix64(child + 0xabcdefULL) ^ s_.stream);
}

}  // namespace hdssl
