// RunFolder: the folder one run writes: the effective config.json, a human log
// (log.txt, every line also on stdout), metrics.csv, progress.png and checkpoints.
//
// Opening takes an exclusive lock (flock on RUN/.lock) for the life of the object, so a second process
// on the same folder is refused with a clear error instead of both writing the same checkpoints. The
// kernel drops the lock when the process dies, even by SIGKILL, so a killed run can be resumed at once.
//
//   hdssl::app::RunFolder run("runs/demo");          // throws hdssl::Error if another process holds it
//   run.write_json("config.json", cfg);              // atomic (temp + rename)
//   run.log("step 10 ...");                           // log.txt + stdout
//   hdssl::app::MetricsCsv m(run.path("metrics.csv"), {"step", "L"}, /*keep_until_step=*/-1);
//
// A data-parallel run (mpirun -np N ./pretrain) has one owner, rank 0; the other ranks open the folder
// with RunFolder::Reader: no folder created, no lock taken, log() writes nothing, write_json() refuses.
#pragma once
#include <cstdint>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace hdssl::app {

class RunFolder {
 public:
  explicit RunFolder(const std::string& dir);
  struct Reader {};
  RunFolder(const std::string& dir, Reader);  // reads only (a rank other than 0): see the note above
  ~RunFolder();
  RunFolder(const RunFolder&) = delete;
  RunFolder& operator=(const RunFolder&) = delete;

  const std::string& dir() const { return dir_; }
  bool owner() const { return owner_; }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  bool exists(const std::string& name) const;
  void write_json(const std::string& name, const nlohmann::json& j) const;  // atomic
  void log(const std::string& line);         // "YYYY-mm-dd HH:MM:SS line" to log.txt, `line` to stdout
  void log_file_only(const std::string& line);

 private:
  std::string dir_;
  int lock_fd_ = -1;
  bool owner_ = true;
  std::ofstream log_;
  std::mutex mu_;
};

// metrics.csv: one header line, then one row per call. Opening an existing file keeps its rows with
// step (first column) <= keep_until_step and drops the later ones (a resumed run redoes those steps);
// keep_until_step < 0 starts a new file. A file from before columns were appended to the list (its header a
// prefix of `columns`) keeps its rows, with nan in the new columns.
class MetricsCsv {
 public:
  MetricsCsv(const std::string& path, std::vector<std::string> columns, int64_t keep_until_step);
  void row(const std::vector<double>& values);  // flushed at once
  const std::vector<std::string>& columns() const { return columns_; }
  // Reads a metrics.csv back: the header and the rows as numbers (for plots and tests).
  static void read(const std::string& path, std::vector<std::string>& columns, std::vector<std::vector<double>>& rows);

 private:
  std::vector<std::string> columns_;
  std::ofstream out_;
};

// Writes text to path atomically (temp file in the same folder, fsync, rename).
void write_file_atomic(const std::string& path, const std::string& text);

}  // namespace hdssl::app
