// What the program tests share: running a command line and reading what a run folder holds.
#pragma once
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace hdssl::test {

struct ProgramResult {
  int code;            // the exit code; 128 + N when killed by signal N, -1 when no shell could be started
  std::string output;  // stdout and stderr together (stdout alone with Stderr::kDropped)
  bool exited = true;  // false when a signal ended it or no shell could be started
};

// What run_command does with the program's stderr.
enum class Stderr { kMerged, kDropped };

// Runs a shell command line and waits for it.
inline ProgramResult run_command(const std::string& cmd, Stderr err = Stderr::kMerged) {
  FILE* p = ::popen((cmd + (err == Stderr::kMerged ? " 2>&1" : " 2>/dev/null")).c_str(), "r");
  if (!p) return {-1, "popen failed for: " + cmd, false};
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int status = ::pclose(p);
  if (WIFEXITED(status)) return {WEXITSTATUS(status), out, true};
  return {128 + WTERMSIG(status), out, false};
}

// run_command with OMP_WAIT_POLICY=PASSIVE set for the program: its idle OpenMP threads sleep instead of
// spinning, so the programs ctest -j runs side by side on few cores do not slow each other down.
inline ProgramResult run_passive(const std::string& cmd) { return run_command("OMP_WAIT_POLICY=PASSIVE " + cmd); }

inline std::string read_text(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// metrics.csv of a pretraining run as text cells, one vector per row (the header dropped).
inline std::vector<std::vector<std::string>> metrics_cells(const std::string& run_dir) {
  std::vector<std::vector<std::string>> rows;
  std::ifstream f(run_dir + "/metrics.csv");
  std::string line, c;
  std::getline(f, line);
  while (std::getline(f, line)) {
    std::vector<std::string> row;
    std::stringstream ss(line);
    while (std::getline(ss, c, ',')) row.push_back(c);
    rows.push_back(row);
  }
  return rows;
}

// The deterministic columns of each metrics.csv row (step, Lc, Lr, L, grad norm) as one line of text: what
// the bitwise comparisons of two runs compare. A row with another number of cells than the header's is
// left out, so a test comparing runs also checks the count.
inline std::vector<std::string> metrics_losses(const std::string& run_dir) {
  static const size_t kColumns = 9;  // step,time_s,lr,Lc,Lr,L,grad_norm,steps_per_s,probe_dice
  std::vector<std::string> out;
  for (const auto& r : metrics_cells(run_dir))
    if (r.size() == kColumns) out.push_back(r[0] + " " + r[3] + " " + r[4] + " " + r[5] + " " + r[6]);
  return out;
}

}  // namespace hdssl::test
