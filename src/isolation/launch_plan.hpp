#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "isolation/cgroup.hpp"
#include "isolation/cgroup_pool.hpp"
#include "isolation/child_steps.hpp"
#include "isolation/limits.hpp"

namespace execd::isolation {

/// A limit that ended an execution, for its terminal event.
struct LimitHit {
  Limit limit;
  uint64_t value = 0;   ///< the limit as requested (MiB, count, seconds)
  std::string message;  ///< "killed: memory limit of 128 MiB reached (OOM kill)"
};

/// Everything a spawn needs to start one execution with its isolation, as plain data,
/// plus what must be cleaned up after it. Made by Isolator::prepare; owned by the
/// execution; destroying it (or finish()) kills whatever is left in its cgroup and removes
/// the cgroup and the per-execution workspace.
///
/// Use: spawn `argv` with `env` in `cwd` (empty: no chdir; bwrap does it inside), and run
/// `child.apply()` in the child before exec (before closing inherited descriptors). The
/// daemon enforces `max_output_bytes` itself while reading the pipes.
struct LaunchPlan {
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string cwd;
  ChildSteps child;
  std::optional<uint64_t> max_output_bytes;
  Limits limits;                    ///< what was asked for (for messages and metrics)
  std::unique_ptr<Cgroup> cgroup;   ///< null when no cgroup is needed or usable
  /// Where `cgroup` goes to be removed once its processes are killed; null: finish()
  /// removes it itself.
  std::shared_ptr<CgroupPool> cgroup_pool;
  std::string workspace;            ///< made for this execution and removed after; else empty

  LaunchPlan() = default;
  LaunchPlan(LaunchPlan&&) = default;
  LaunchPlan& operator=(LaunchPlan&&) = default;
  ~LaunchPlan();

  /// Which limit ended the execution, given its wait status (cgroup OOM counter, SIGXCPU
  /// as a signal or as bwrap's and a shell's exit status 128+SIGXCPU, the cgroup's CPU
  /// usage past the limit, the pids limit refusing forks); nullopt when none did.
  /// `baseline`: the counters when this part of the execution began (a session's run),
  /// so only what happened since counts.
  [[nodiscard]] std::optional<LimitHit> limit_hit(int wait_status, const CgroupUsage& baseline = {}) const;

  /// Kills every process left in the cgroup, removes it and the workspace (with a
  /// cgroup_pool: hands both to the pool's thread, the processes killed first). Idempotent. `reap` runs between kill
  /// rounds (the subreaper collecting the killed orphans).
  void finish(const Cgroup::Reap& reap = {});
};

}  // namespace execd::isolation
