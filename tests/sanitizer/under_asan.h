// Whether this test binary runs under AddressSanitizer (scripts/test.sh --sanitize). A few checks cannot
// hold there and skip with a reason: ASan reserves terabytes of shadow address space, so `ulimit -v` kills
// it at start, and it inflates resident memory, so measured peaks are not the program's.
#pragma once

namespace hdssl::test {
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kUnderAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kUnderAsan = true;
#else
constexpr bool kUnderAsan = false;
#endif
#else
constexpr bool kUnderAsan = false;
#endif
}  // namespace hdssl::test
