#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <vector>

#include "core/result.hpp"

namespace execd::isolation {

/// One resource limit the child sets on itself before exec.
struct RlimitSetting {
  int resource = 0;  ///< RLIMIT_*
  rlim_t soft = 0;
  rlim_t hard = 0;
};

/// What a child does to itself between clone and exec, as plain data so process::spawn
/// can run it without knowing about isolation. Built by Isolator::prepare; the descriptors
/// belong to the plan's Cgroup and stay valid while it lives (they are CLOEXEC, so they
/// vanish at exec).
///
/// Order matters: join the cgroup first (so everything after, including a failure, is
/// accounted to the execution), then rlimits, then no_new_privs. A spawn that closes
/// inherited descriptors must run apply() before closing them.
struct ChildSteps {
  std::vector<int> cgroup_procs_fds;  ///< open O_WRONLY cgroup.procs files; the child writes "0" to each
  std::vector<RlimitSetting> rlimits;
  bool no_new_privs = false;          ///< prctl(PR_SET_NO_NEW_PRIVS): setuid binaries gain nothing

  [[nodiscard]] bool empty() const { return cgroup_procs_fds.empty() && rlimits.empty() && !no_new_privs; }

  /// Runs the steps in the calling (child) process. Async-signal-safe and allocation-free:
  /// fit for a vfork/CLONE_VM child. Returns 0, or an errno with `*failed_step` set to a
  /// static string naming the step ("joining the execution's cgroup", ...).
  int apply(const char** failed_step) const noexcept;

  /// The same steps on a process that is already running and has not yet been given
  /// anything to run (a pre-started interpreter waiting for its request), from the
  /// daemon: `pid` written to each cgroup.procs (the whole process moves, its threads
  /// too), each rlimit set with prlimit(2). no_new_privs cannot be set on another
  /// process: when asked for, `pid` must already have it (it was started with it);
  /// otherwise unavailable. An error names the step; the process must then not be used.
  core::Result<void> apply_to(pid_t pid) const;
};

}  // namespace execd::isolation
