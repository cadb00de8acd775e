#include "isolation/capabilities.hpp"

#include <signal.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "core/unique_fd.hpp"
#include "isolation/bwrap_command.hpp"
#include "isolation/cgroup_root.hpp"

extern char** environ;

namespace execd::isolation {
namespace {

/// Runs a trivial sandbox; "" when it worked, else what bwrap said.
std::string try_bwrap(const std::string& bwrap) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return "cannot make a pipe";
  core::UniqueFd rd(fds[0]);
  core::UniqueFd wr(fds[1]);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, wr.get(), 2);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  const char* args[] = {bwrap.c_str(), "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true", nullptr};
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, bwrap.c_str(), &fa, nullptr, const_cast<char**>(args), environ);
  posix_spawn_file_actions_destroy(&fa);
  wr.reset();
  if (rc != 0) return "cannot run " + bwrap;
  std::string err;
  char buf[1024];
  for (ssize_t n; (n = ::read(rd.get(), buf, sizeof buf)) > 0 && err.size() < 4096;) {
    err.append(buf, static_cast<size_t>(n));
  }
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return "bwrap did not finish a trivial sandbox within 10 s";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
  return "bwrap cannot create namespaces here (user namespaces disallowed?): " +
         (err.empty() ? std::string("exit status ") + std::to_string(status) : err);
}

Mechanism cgroup_mechanism(int version) { return version == 2 ? Mechanism::cgroup_v2 : Mechanism::cgroup_v1; }

}  // namespace

std::string_view mechanism_name(Mechanism m) {
  switch (m) {
    case Mechanism::none: return "none";
    case Mechanism::cgroup_v1: return "cgroup-v1";
    case Mechanism::cgroup_v2: return "cgroup-v2";
    case Mechanism::rlimit: return "rlimit";
    case Mechanism::daemon: return "daemon";
    case Mechanism::tmpfs: return "tmpfs";
  }
  return "none";
}

Capabilities probe(const CgroupRoot& cgroups, const std::string& bwrap) {
  Capabilities c;
  c.cgroup_version = cgroups.version();
  c.cgroup_controllers = cgroups.writable_controllers();
  c.cgroup_reason = cgroups.reason();

  c.levels[static_cast<size_t>(Level::none)] = {true, ""};
  c.levels[static_cast<size_t>(Level::process)] = {true, ""};
  LevelSupport ns;
  if (::access(bwrap.c_str(), X_OK) != 0) {
    ns.reason = bwrap + " not found (install Debian's bubblewrap)";
  } else {
    c.bwrap_path = bwrap;
    ns.reason = try_bwrap(bwrap);
    ns.supported = ns.reason.empty();
  }
  c.levels[static_cast<size_t>(Level::namespace_)] = ns;

  const auto set = [&c](Limit l, LimitSupport s) { c.limits[static_cast<size_t>(l)] = std::move(s); };
  const bool root = ::geteuid() == 0;
  if (cgroups.writable("memory")) {
    set(Limit::memory_mb, {true, cgroup_mechanism(c.cgroup_version), ""});
  } else {
    set(Limit::memory_mb, {true, Mechanism::rlimit,
                           "no writable memory cgroup (" + c.cgroup_reason +
                               "): RLIMIT_AS per process; it caps address space, not memory (runtimes that "
                               "reserve large ranges fail early), each process gets the whole amount, and "
                               "exceeding it is a failed allocation, not an OOM kill"});
  }
  if (cgroups.writable("pids")) {
    set(Limit::processes, {true, cgroup_mechanism(c.cgroup_version), ""});
  } else if (!root) {
    set(Limit::processes, {true, Mechanism::rlimit,
                           "no writable pids cgroup: RLIMIT_NPROC counts every process of the user, not of "
                           "the execution"});
  } else {
    set(Limit::processes, {false, Mechanism::none,
                           "no writable pids cgroup (" + c.cgroup_reason +
                               "), and RLIMIT_NPROC is not enforced for root"});
  }
  const bool cpu_usage = cgroups.writable("cpuacct") || cgroups.writable("cpu");
  set(Limit::cpu_time_s, {true, Mechanism::rlimit,
                          std::string("RLIMIT_CPU per process: each child gets its own budget") +
                              (cpu_usage ? "; the cgroup's usage gives the execution's total" : "")});
  set(Limit::output_bytes, {true, Mechanism::daemon, ""});
  set(Limit::open_files, {true, Mechanism::rlimit, ""});
  if (!ns.supported) {
    set(Limit::disk_mb, {false, Mechanism::none, "needs isolation level namespace: " + ns.reason});
  } else if (!SystemLayout::host(bwrap).tmpfs_size_supported) {
    set(Limit::disk_mb, {false, Mechanism::none, "this bubblewrap has no --size for a capped tmpfs"});
  } else {
    set(Limit::disk_mb, {true, Mechanism::tmpfs, "at namespace level only: the workspace is a tmpfs of that size"});
  }
  return c;
}

core::Result<void> check(const Limits& limits, const Capabilities& caps) {
  const LevelSupport& level = caps.level(limits.level);
  if (!level.supported) {
    return core::make_error(core::Errc::invalid_argument, "field 'isolation': level '" +
                                                              std::string(level_name(limits.level)) +
                                                              "' is not available on this host: " + level.reason);
  }
  if (limits.network.has_value() && !*limits.network && limits.level != Level::namespace_) {
    return core::make_error(core::Errc::invalid_argument,
                            "field 'network': false needs isolation 'namespace' (only a network namespace can "
                            "take the network away)");
  }
  for (const Limit l : kAllLimits) {
    if (!limits.get(l)) continue;
    const LimitSupport& s = caps.limit(l);
    if (!s.supported) {
      return core::make_error(core::Errc::invalid_argument,
                              "field '" + std::string(field_name(l)) + "' is not enforceable on this host: " + s.reason);
    }
    if (l == Limit::disk_mb && limits.level != Level::namespace_) {
      return core::make_error(core::Errc::invalid_argument,
                              "field 'disk_limit_mb' needs isolation 'namespace' (the workspace is a capped tmpfs)");
    }
  }
  return {};
}

}  // namespace execd::isolation
