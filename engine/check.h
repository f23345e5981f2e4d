// Error checks that say where: HDSSL_CHECK(cond) << "message" throws hdssl::Error with file:line.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace hdssl {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace detail {
// Collects a message with operator<< and throws when destroyed (only built when the check failed).
class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* cond) {
    os_ << file << ":" << line << ": check failed: " << cond << ": ";
  }
  template <class T>
  CheckFailure& operator<<(const T& v) { os_ << v; return *this; }
  [[noreturn]] ~CheckFailure() noexcept(false) { throw Error(os_.str()); }
 private:
  std::ostringstream os_;
};
}  // namespace detail
}  // namespace hdssl

#define HDSSL_CHECK(cond) \
  if (cond) {} else ::hdssl::detail::CheckFailure(__FILE__, __LINE__, #cond)
