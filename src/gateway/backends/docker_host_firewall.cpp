#include "gateway/backends/docker_host_firewall.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "process/spawn.hpp"

namespace execd::gateway {
namespace {

// Exit status and output (stdout and stderr) of `argv`, or an error when it could not be
// started or did not end by `deadline` (then it is killed).
core::Result<std::pair<int, std::string>> run(const std::vector<std::string>& argv,
                                              std::chrono::steady_clock::time_point deadline) {
  process::SpawnOptions so;
  so.argv = argv;
  so.env = process::environment_with({});
  so.merge_stderr = true;
  auto child = process::spawn(so);
  if (!child) return child.error();
  std::string out;
  char buf[4096];
  bool open = true;
  while (open) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{child->stdout_fd.get(), POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    const ssize_t n = ::read(child->stdout_fd.get(), buf, sizeof buf);
    if (n > 0) {
      if (out.size() < 16384) out.append(buf, static_cast<size_t>(n));
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
      open = false;
    }
  }
  int status = 0;
  while (true) {
    const pid_t w = ::waitpid(child->pid, &status, WNOHANG);
    if (w == child->pid) break;
    if (w < 0 && errno != EINTR) return core::make_error(core::Errc::internal, argv[0] + ": lost the child");
    if (std::chrono::steady_clock::now() >= deadline) {
      process::signal_group(child->pid, SIGKILL);
      ::waitpid(child->pid, &status, 0);
      return core::make_error(core::Errc::unavailable, argv[0] + " did not finish in time");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return std::make_pair(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), out);
}

std::string joined(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) s += (s.empty() ? "" : " ") + a;
  return s;
}

}  // namespace

std::string DockerHostFirewall::sandbox_bridge_name(const std::string& sandbox_id) {
  uint64_t h = 1469598103934665603ull;
  for (const unsigned char ch : sandbox_id) h = (h ^ ch) * 1099511628211ull;
  std::string name = kBridgePrefix;
  for (int shift = 44; shift >= 0; shift -= 4) name += "0123456789abcdef"[(h >> shift) & 0xf];
  return name;
}

core::Result<void> DockerHostFirewall::ensure(const std::string& iptables, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const std::vector<std::string> rule = {"INPUT", "-i", std::string(kBridgePrefix) + "+", "-m", "conntrack",
                                         "--ctstate", "NEW", "-j", "REJECT"};
  auto command = [&](const char* action) {
    std::vector<std::string> argv = {iptables, "-w", "5", action};
    argv.insert(argv.end(), rule.begin(), rule.end());
    if (std::string(action) == "-I") argv.insert(argv.begin() + 5, "1");  // first in INPUT
    return argv;
  };
  auto check = run(command("-C"), deadline);
  if (!check) {
    return core::make_error(core::Errc::unavailable, "running " + joined(command("-C")) + ": " + check.error().message);
  }
  if (check->first == 0) return {};  // already there (another gateway, or an earlier run)
  const auto insert_argv = command("-I");
  auto insert = run(insert_argv, deadline);
  if (!insert) return core::make_error(core::Errc::unavailable, "running " + joined(insert_argv) + ": " + insert.error().message);
  if (insert->first != 0) {
    return core::make_error(core::Errc::unavailable, joined(insert_argv) + " exited with " +
                                                         std::to_string(insert->first) + ": " + insert->second);
  }
  spdlog::info("docker backend: new connections from sandbox bridges ({}+) to this host are refused ({})",
               kBridgePrefix, joined(insert_argv));
  return {};
}

}  // namespace execd::gateway
