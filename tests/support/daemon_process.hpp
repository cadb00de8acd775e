#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>

namespace execd::test {

/// Which program a DaemonProcess starts, and the environment variable naming its path.
enum class Program {
  execd,    ///< $EXECD_BIN (build/execd)
  gateway,  ///< $EXECD_GATEWAY_BIN (build/execd-gateway)
};

/// A real program of this repository (build/execd by default, or build/execd-gateway)
/// started with `--port 0` on 127.0.0.1. The constructor waits for the "listening on"
/// log line and reads the bound port from it; a program that does not come up within
/// 15 s fails the test loudly. stderr is drained
/// by a thread and kept (log()). The destructor sends SIGTERM, then SIGKILL after 10 s.
class DaemonProcess {
 public:
  explicit DaemonProcess(std::vector<std::string> extra_args = {},
                         std::vector<std::string> extra_env = {}, Program program = Program::execd);
  ~DaemonProcess();
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;

  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] pid_t pid() const { return pid_; }
  /// A client bound to the daemon, with TCP_NODELAY and 30 s timeouts.
  [[nodiscard]] std::unique_ptr<httplib::Client> client() const;
  /// Everything the daemon logged so far.
  [[nodiscard]] std::string log() const;
  /// Sends `sig` and waits up to `timeout` for exit. Returns the wait status, or -1.
  int stop(int sig, std::chrono::milliseconds timeout);
  /// Resident set size of the daemon in KiB (from /proc/<pid>/status).
  [[nodiscard]] long rss_kib() const;

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  int stderr_fd_ = -1;
  std::thread drain_;
  mutable std::mutex log_mu_;
  std::string log_;
  bool exited_ = false;
};

/// Runs `/bin/sh -c cmd`, returns stdout (for checks like `ps`); test helper only.
std::string shell_output(const std::string& cmd);

}  // namespace execd::test
