// The run folder: lock, config, log and metrics.
#include "apps/common/run_folder.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "engine/check.h"

namespace hdssl::app {

void write_file_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  HDSSL_CHECK(fd >= 0) << "cannot create " << tmp << ": " << std::strerror(errno);
  size_t off = 0;
  while (off < text.size()) {
    ssize_t w = ::write(fd, text.data() + off, text.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) { ::close(fd); ::unlink(tmp.c_str()); HDSSL_CHECK(false) << "cannot write " << tmp << ": " << std::strerror(errno); }
    off += size_t(w);
  }
  ::fsync(fd);
  ::close(fd);
  HDSSL_CHECK(::rename(tmp.c_str(), path.c_str()) == 0) << "cannot rename " << tmp << " to " << path << ": " << std::strerror(errno);
}

RunFolder::RunFolder(const std::string& dir) : dir_(dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  HDSSL_CHECK(!ec && std::filesystem::is_directory(dir_)) << "cannot create the run folder " << dir_ << ": " << ec.message();
  const std::string lock = path(".lock");
  lock_fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  HDSSL_CHECK(lock_fd_ >= 0) << "cannot open " << lock << ": " << std::strerror(errno);
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    std::string holder;
    char buf[64] = {0};
    if (::pread(lock_fd_, buf, sizeof(buf) - 1, 0) > 0) holder = buf;
    ::close(lock_fd_);
    lock_fd_ = -1;
    HDSSL_CHECK(false) << "the run folder " << dir_ << " is in use by another process"
                       << (holder.empty() ? "" : " (pid " + holder.substr(0, holder.find('\n')) + ")")
                       << "; wait for it to finish or choose another folder with -o";
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(lock_fd_, 0) == 0 && ::pwrite(lock_fd_, pid.data(), pid.size(), 0) < 0) {}
  log_.open(path("log.txt"), std::ios::app);
  HDSSL_CHECK(log_.good()) << "cannot write " << path("log.txt");
}

RunFolder::RunFolder(const std::string& dir, Reader) : dir_(dir), owner_(false) {}

RunFolder::~RunFolder() {
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

bool RunFolder::exists(const std::string& name) const { return std::filesystem::exists(path(name)); }

void RunFolder::write_json(const std::string& name, const nlohmann::json& j) const {
  HDSSL_CHECK(owner_) << "write_json(" << name << "): " << dir_ << " is opened read-only (not rank 0)";
  write_file_atomic(path(name), j.dump(2) + "\n");
}

void RunFolder::log_file_only(const std::string& line) {
  if (!owner_) return;
  std::lock_guard<std::mutex> g(mu_);
  std::time_t t = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", std::localtime(&t));
  log_ << stamp << " " << line << "\n";
  log_.flush();
}

void RunFolder::log(const std::string& line) {
  if (!owner_) return;
  log_file_only(line);
  std::cout << line << std::endl;
}

MetricsCsv::MetricsCsv(const std::string& path, std::vector<std::string> columns, int64_t keep_until_step)
    : columns_(std::move(columns)) {
  std::string kept;
  if (keep_until_step >= 0 && std::filesystem::exists(path)) {
    std::ifstream in(path);
    std::string line, header;
    std::getline(in, header);
    // A file written before columns were appended (its header a proper prefix of ours): its whole rows
    // are kept with "nan" in the new columns.
    std::string ours, pad;
    for (size_t i = 0; i < columns_.size(); ++i) ours += (i ? "," : "") + columns_[i];
    const size_t file_cells = size_t(std::count(header.begin(), header.end(), ',')) + 1;
    if (file_cells < columns_.size() && ours.compare(0, header.size() + 1, header + ",") == 0)
      for (size_t i = file_cells; i < columns_.size(); ++i) pad += ",nan";
    const size_t cells = pad.empty() ? columns_.size() : file_cells;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      try {
        const bool whole = size_t(std::count(line.begin(), line.end(), ',')) + 1 == cells;
        if (whole && std::stoll(line.substr(0, line.find(','))) <= keep_until_step) kept += line + pad + "\n";
      } catch (...) {  // a torn last line from a killed run
      }
    }
  }
  std::string header;
  for (size_t i = 0; i < columns_.size(); ++i) header += (i ? "," : "") + columns_[i];
  write_file_atomic(path, header + "\n" + kept);
  out_.open(path, std::ios::app);
  HDSSL_CHECK(out_.good()) << "cannot write " << path;
}

void MetricsCsv::row(const std::vector<double>& values) {
  HDSSL_CHECK(values.size() == columns_.size()) << "metrics row of " << values.size() << " values for " << columns_.size() << " columns";
  std::ostringstream os;
  os.precision(17);  // round-trips a double: resumed runs compare bit for bit
  for (size_t i = 0; i < values.size(); ++i) os << (i ? "," : "") << values[i];
  out_ << os.str() << "\n";
  out_.flush();
}

void MetricsCsv::read(const std::string& path, std::vector<std::string>& columns, std::vector<std::vector<double>>& rows) {
  std::ifstream in(path);
  HDSSL_CHECK(in.good()) << "cannot read " << path;
  std::string line, cell;
  columns.clear();
  rows.clear();
  if (!std::getline(in, line)) return;
  std::istringstream hs(line);
  while (std::getline(hs, cell, ',')) columns.push_back(cell);
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::vector<double> r;
    std::istringstream ls(line);
    while (std::getline(ls, cell, ',')) r.push_back(std::stod(cell));
    if (r.size() == columns.size()) rows.push_back(std::move(r));
  }
}

}  // namespace hdssl::app
