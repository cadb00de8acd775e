#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace execd::test {

/// One process as /proc showed it when processes() read it.
struct ProcInfo {
  pid_t pid = 0;
  pid_t ppid = 0;
  char state = '?';      ///< 'Z' for a zombie
  std::string cmdline;   ///< arguments joined by spaces (a zombie's is empty)
  std::string stat_head; ///< "pid (comm) S", for failure messages
};

/// Every process on the machine now; ones that end while being read are skipped.
std::vector<ProcInfo> processes();

/// Live (non-zombie) processes whose command line contains `needle`.
std::vector<pid_t> live_with(const std::string& needle);

/// Descriptors `pid` holds open.
size_t fd_count(pid_t pid);

/// A "Key: N kB" line of /proc/<pid>/status (VmRSS, VmHWM, RssAnon...) in KiB; -1 if absent.
long status_kib(pid_t pid, const std::string& key);

/// The child cgroups of `daemon`'s parent groups (`execd-<pid>-*`, cgroup v1 memory and pids
/// hierarchies) whose names start with `prefix`, as "controller:name". The pool's spares
/// (`spare-N`: never used; on v1 a group taken from the pool is renamed after its
/// execution) are left out unless `prefix` asks for them.
std::vector<std::string> daemon_cgroups(pid_t daemon, const std::string& prefix = "");

/// A shell command that SIGKILLs every process below the gateway process backend's keepers
/// whose command line names `prefix` (a sandbox's directory, or a whole state directory):
/// its bwrap and execd and all they started, as if they crashed; the keepers too when
/// `keepers_too` (cleaning up), else they stay to record how their sandbox ended.
std::string kill_below_keepers_command(const std::string& prefix, bool keepers_too);

/// Polls `pred` every `step` until it holds or `limit` passes; its last answer.
template <typename Pred>
bool within(std::chrono::milliseconds limit, Pred pred, std::chrono::milliseconds step = std::chrono::milliseconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(step);
  }
  return pred();
}

}  // namespace execd::test
