// A full disk, simulated: runs a function in a forked child whose files may not grow beyond `limit`
// bytes (RLIMIT_FSIZE, with SIGXFSZ ignored so a write past the limit fails with EFBIG like a full disk
// fails with ENOSPC). Returns the what() of the exception the function threw, or "" if it succeeded.
// The parent then checks what was left on disk.
#pragma once
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <exception>
#include <functional>
#include <string>

namespace hdssl::test {

inline std::string error_with_file_size_limit(rlim_t limit, const std::function<void()>& fn) {
  int fds[2];
  if (::pipe(fds) != 0) return "pipe failed";
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    std::signal(SIGXFSZ, SIG_IGN);
    rlimit rl{limit, limit};
    ::setrlimit(RLIMIT_FSIZE, &rl);
    std::string msg;
    try {
      fn();
    } catch (const std::exception& e) {
      msg = e.what();
      if (msg.empty()) msg = "(empty message)";
    }
    ssize_t w = ::write(fds[1], msg.data(), msg.size());
    (void)w;
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) out.append(buf, size_t(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status)) return "child died with signal " + std::to_string(WTERMSIG(status));
  return out;
}

}  // namespace hdssl::test
