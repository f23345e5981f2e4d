// Progress: one line a person can follow - step, steps/s, ETA and the loss terms - with a bar only
// when stderr is a terminal (redrawn in place there; printed as plain lines otherwise).
//
//   hdssl::app::Progress p(/*first_step=*/0, /*last_step=*/50000);
//   p.update(step, {{"Lc", lc}, {"Lr", lr}, {"L", l}});   // returns the line, prints it when due
#pragma once
#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace hdssl::app {

class Progress {
 public:
  // Steps first_step+1 .. last_step will be reported; prints at most every `min_interval_s` seconds
  // (always the first and the last step).
  Progress(int64_t first_step, int64_t last_step, double min_interval_s = 1.0);
  // Records that `step` finished; returns the progress line (without the bar) and prints it when due.
  std::string update(int64_t step, const std::vector<std::pair<std::string, double>>& terms);
  double steps_per_second() const { return rate_; }
  void finish();  // ends the in-place line on a terminal

 private:
  using Clock = std::chrono::steady_clock;
  int64_t first_, last_;
  double min_interval_;
  Clock::time_point start_, last_print_;
  double rate_ = 0;
  bool tty_, printed_ = false;
};

std::string format_duration(double seconds);  // "1h02m", "3m05s", "12s"

}  // namespace hdssl::app
