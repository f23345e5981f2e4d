// The progress line: smoothed steps/s over the run so far, ETA, loss terms, bar on a TTY.
#include "apps/common/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace hdssl::app {

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  char b[32];
  const long t = long(s + 0.5);
  if (t >= 3600) std::snprintf(b, sizeof(b), "%ldh%02ldm", t / 3600, (t % 3600) / 60);
  else if (t >= 60) std::snprintf(b, sizeof(b), "%ldm%02lds", t / 60, t % 60);
  else std::snprintf(b, sizeof(b), "%lds", t);
  return b;
}

Progress::Progress(int64_t first_step, int64_t last_step, double min_interval_s)
    : first_(first_step), last_(last_step), min_interval_(min_interval_s), start_(Clock::now()),
      last_print_(start_), tty_(::isatty(STDERR_FILENO) == 1) {}

std::string Progress::update(int64_t step, const std::vector<std::pair<std::string, double>>& terms) {
  const auto now = Clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  rate_ = elapsed > 0 ? double(step - first_) / elapsed : 0;
  const double eta = rate_ > 0 ? double(last_ - step) / rate_ : NAN;
  char head[128];
  std::snprintf(head, sizeof(head), "step %lld/%lld  %.3g steps/s  ETA %s", (long long)step, (long long)last_, rate_,
                format_duration(eta).c_str());
  std::string line = head;
  for (const auto& [name, v] : terms) {
    char t[64];
    std::snprintf(t, sizeof(t), "  %s %.5g", name.c_str(), v);
    line += t;
  }
  const bool due = step == first_ + 1 || step == last_ ||
                   std::chrono::duration<double>(now - last_print_).count() >= min_interval_;
  if (due) {
    last_print_ = now;
    if (tty_) {
      const int width = 24;
      const double frac = last_ > first_ ? double(step - first_) / double(last_ - first_) : 1.0;
      const int fill = int(frac * width + 0.5);
      std::string bar = "[" + std::string(size_t(fill), '#') + std::string(size_t(width - fill), '.') + "] ";
      std::fprintf(stderr, "\r\033[K%s%s", bar.c_str(), line.c_str());
      printed_ = true;
    } else {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
    std::fflush(stderr);
  }
  return line;
}

void Progress::finish() {
  if (tty_ && printed_) std::fprintf(stderr, "\n");
  printed_ = false;
}

}  // namespace hdssl::app
