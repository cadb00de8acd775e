#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "isolation/capabilities.hpp"
#include "isolation/cgroup_pool.hpp"
#include "isolation/cgroup_root.hpp"
#include "isolation/launch_plan.hpp"
#include "isolation/limits.hpp"

namespace execd::isolation {

/// What one execution wants to run, before isolation is applied.
struct LaunchRequest {
  std::vector<std::string> argv;
  /// The whole environment. At process and namespace level it must be built from the
  /// request and --envs-file only, never the daemon's own environment.
  std::vector<std::string> env;
  std::string cwd;                     ///< empty: the daemon's (none/process), a fresh workspace (namespace)
  std::string id;                      ///< names the cgroup and workspace; unique per execution
  std::vector<std::string> rw_binds;   ///< namespace level: host paths shared writable (a kernel's ipc dir)
  /// A long-lived process that runs many units of work (a kernel's cells): with a cgroup
  /// that counts CPU, cpu_time_limit_s bounds each unit (the caller's watchdog, against
  /// the cgroup's counters), so the process gets no RLIMIT_CPU, which would bound the sum.
  bool cpu_limit_per_unit = false;
  /// The child holds a pseudo-terminal of its own as its controlling tty (a PTY session):
  /// at namespace level bwrap keeps it (no --new-session; BwrapCommand::Options).
  bool own_terminal = false;
};

/// The daemon's isolation service: the host's capabilities (probed once, on first use),
/// the daemon-wide defaults (flags), its cgroup parent (made, and dead daemons' groups
/// swept, at construction) and the per-execution workspaces. Thread-safe. One per
/// daemon, built by the composition root.
class Isolator {
 public:
  struct Options {
    Limits defaults;
    std::string bwrap = "/usr/bin/bwrap";
    std::string workspace_base;          ///< where fresh namespace-level workspaces go; empty: $TMPDIR
    CgroupRoot::Options cgroups;
    /// Spare cgroups made ahead (CgroupPool); used groups are then removed off the
    /// request path too. 0: each execution makes and removes its group itself.
    size_t cgroup_pool_size = 4;
  };

  explicit Isolator(Options options);

  /// The probe's answer, made on the first call (tens of ms) and cached.
  const Capabilities& capabilities();
  [[nodiscard]] const Limits& defaults() const { return options_.defaults; }
  [[nodiscard]] const CgroupRoot& cgroups() const { return *cgroups_; }
  /// The spare cgroups and the deferred remover; null when Options::cgroup_pool_size is 0
  /// or the host has no usable cgroups.
  [[nodiscard]] CgroupPool* cgroup_pool() const { return pool_.get(); }
  /// Stops the pool making groups, kills every execution's cgroup and removes the
  /// daemon's cgroup parent with everything in it, spares too (CgroupRoot::remove_all):
  /// for a daemon about to exit without its destructors.
  void remove_cgroups();

  /// check() against this host.
  core::Result<void> check(const Limits& limits);

  /// The plan for one execution at `limits` (check()ed first): its cgroup made and
  /// limited, rlimits and no_new_privs as child steps, at namespace level the bwrap argv
  /// and workspace. Errors: invalid_argument (as check(), or a bad cwd), unavailable (a
  /// cgroup or workspace could not be made).
  core::Result<LaunchPlan> prepare(const Limits& limits, LaunchRequest request);

 private:
  Options options_;
  std::shared_ptr<CgroupRoot> cgroups_;
  std::shared_ptr<CgroupPool> pool_;  // shared with the plans that will retire a group to it
  std::once_flag probed_;
  Capabilities caps_;
};

}  // namespace execd::isolation
