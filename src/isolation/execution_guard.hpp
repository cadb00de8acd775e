#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/result.hpp"
#include "isolation/isolator.hpp"
#include "isolation/launch_plan.hpp"
#include "isolation/limits.hpp"
#include "process/spawn.hpp"

namespace execd::isolation {

/// One execution's isolation while it runs: its LaunchPlan (cgroup, workspace, child
/// steps), the output cap, and which limit ended it. Made by make() before the spawn;
/// owned by the Command or BashSession it guards. Output accounting runs on the reactor
/// thread; signal() and record_kill() from any thread.
///
/// The cgroup is how every process of the execution is found: signals go to its members
/// too (a `setsid` escapee is still reached), and at the end whatever is left is killed,
/// the killed orphans reaped, the cgroup and a fresh workspace removed (finish()).
class ExecutionGuard {
 public:
  /// True when `limits` ask for anything at all: level none with no limit needs no guard,
  /// and then an execution costs exactly what it did before isolation existed.
  static bool needed(const Limits& limits);

  /// Prepares the plan for running `so.argv` under `limits` (Isolator::prepare: cgroup
  /// made and limited, bwrap argv at namespace level) and rewrites `so` to launch it: the
  /// plan's argv, environment and cwd, and its child steps as the spawn's child setup.
  /// `so` must not be moved or destroyed before the spawn while the guard lives (the
  /// setup points into the guard). `id` names the cgroup and workspace; `rw_binds` are
  /// host paths shared writable with the sandbox at namespace level (a kernel's ipc dir);
  /// `cpu_limit_per_unit` as LaunchRequest's (a kernel: the CPU limit is per cell);
  /// `own_terminal` as LaunchRequest's (a PTY session's shell keeps its terminal).
  static core::Result<std::unique_ptr<ExecutionGuard>> make(Isolator& isolator,
                                                            const Limits& limits,
                                                            process::SpawnOptions& so, const std::string& id,
                                                            std::vector<std::string> rw_binds = {},
                                                            bool cpu_limit_per_unit = false,
                                                            bool own_terminal = false);

  explicit ExecutionGuard(LaunchPlan plan);
  ~ExecutionGuard();  ///< finish()
  ExecutionGuard(const ExecutionGuard&) = delete;
  ExecutionGuard& operator=(const ExecutionGuard&) = delete;

  [[nodiscard]] const Limits& limits() const { return plan_.limits; }
  [[nodiscard]] bool in_namespace() const { return plan_.limits.level == Level::namespace_; }
  [[nodiscard]] bool has_cgroup() const { return plan_.cgroup != nullptr; }
  /// The fresh per-execution workspace (namespace level without a cwd), else empty.
  [[nodiscard]] const std::string& workspace() const { return plan_.workspace; }

  /// Of `n` bytes just read, how many may be kept under max_output_bytes. Sets
  /// `*capped_now` on the one call that reaches the cap. Reactor thread.
  size_t admit_output(size_t n, bool* capped_now);
  /// Starts counting output afresh (a session's next run).
  void reset_output() { output_bytes_ = 0; }

  /// `sig` to the execution: the process group `pgid` (not at namespace level, where
  /// `pgid` is bwrap's, which would take the sandbox down at once) and every member of
  /// the cgroup but `leader` at namespace level. False when nothing was reached.
  bool signal(int sig, pid_t pgid) const;

  /// The daemon ended the execution for `limit` (output cap, CPU watchdog); limit_hit()
  /// reports it first.
  void record_kill(Limit limit);
  /// The cgroup's CPU usage since `baseline` has reached cpu_time_limit_s.
  [[nodiscard]] bool cpu_exceeded(const CgroupUsage& baseline = {}) const;
  /// Pids in the cgroup now (empty without one).
  [[nodiscard]] std::vector<pid_t> members() const;
  /// The cgroup's counters now (empty without a cgroup).
  [[nodiscard]] CgroupUsage usage() const;

  /// Which limit ended the execution (see LaunchPlan::limit_hit), what the daemon
  /// recorded taking precedence.
  [[nodiscard]] std::optional<LimitHit> limit_hit(int wait_status,
                                                             const CgroupUsage& baseline = {}) const;
  /// Adds the cgroup's view to a terminal event's accounting: peak memory of the whole
  /// execution (grandchildren included) and its total CPU time.
  void add_usage(nlohmann::json& accounting, const CgroupUsage& baseline = {}) const;
  /// {"limit": "memory", "field": "memory_limit_mb", "value_mb": 128, "message": ...,
  ///  "oom_kill": true}: the terminal event's `killed`.
  static nlohmann::json killed_json(const LimitHit& hit);

  /// Kills every process left in the cgroup and reaps the orphans among them; the cgroup
  /// stays (its counters can still be read). Blocks until empty, at most 5 s.
  void finish_processes();
  /// finish_processes(), then removes the cgroup and the workspace. Idempotent.
  void finish();

 private:
  static int run_child_steps(const void* arg, const char** failed_step) noexcept;
  Cgroup::Reap reaper();

  LaunchPlan plan_;
  uint64_t output_bytes_ = 0;  // reactor thread
  mutable std::mutex mu_;
  std::optional<Limit> recorded_;
  bool finished_ = false;
  std::set<pid_t> unreaped_;  // killed members not yet collected (the finishing thread)
};

}  // namespace execd::isolation
