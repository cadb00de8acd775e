#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "core/unique_fd.hpp"
#include "exec/event_log.hpp"
#include "jupyter/kernel_client.hpp"
#include "jupyter/kernelspec.hpp"
#include "isolation/execution_guard.hpp"
#include "isolation/isolator.hpp"
#include "isolation/limits.hpp"
#include "process/child_reaper.hpp"

namespace execd::jupyter {

/// One running kernel: its process (own process group, connection file with a fresh
/// HMAC key in a private 0700 directory under Launch::runtime_base, removed with the
/// kernel) and its KernelClient. start() returns only once the kernel answered
/// kernel_info_request and its iopub output reaches us, so no early output is lost; it
/// also learns whether this kernel reports `idle` (see execute()).
class Kernel {
 public:
  struct Launch {
    std::string cwd;           ///< empty: the daemon's
    std::string runtime_base;  ///< where the kernel's own directory is made; empty: $TMPDIR or /tmp
    std::shared_ptr<process::ChildReaper> reaper;
    std::chrono::milliseconds timeout{30000};  ///< ready by then or the start fails
    /// Isolation (ExecutionGuard): with any level or limit the kernel runs in its own
    /// cgroup, with an environment of `envs_file` and the kernelspec only; at namespace
    /// level inside bwrap without network, talking ZeroMQ over ipc:// socket files in its
    /// runtime directory, the one host directory bound writable into the sandbox.
    std::shared_ptr<isolation::Isolator> isolator;
    isolation::Limits limits;
    std::string envs_file;
  };
  static core::Result<std::unique_ptr<Kernel>> start(const KernelSpec& spec, const Launch& launch);
  /// shutdown_request, a short wait, then SIGKILL to the group; reaped; files removed.
  ~Kernel();
  Kernel(const Kernel&) = delete;
  Kernel& operator=(const Kernel&) = delete;

  struct Outcome {
    bool died = false;
    std::string death;  ///< why, when died
    bool timed_out = false;
    /// A per-cell limit the daemon enforced (max_output_bytes, cpu_time_limit_s): the cell
    /// was interrupted for it, and the kernel killed when it did not stop in time.
    std::optional<isolation::LimitHit> limit;
  };
  /// Runs one cell, appending its events to `log` as they arrive (stream output in
  /// pieces of at most 1 MiB, execution_count + result, display_data as result, status +
  /// error), and returns when it is over. Over means:
  ///  - execute_reply and `idle` (iopub and shell are separate sockets: output may still
  ///    be in flight when the reply comes, and only `idle` says it is all here);
  ///  - for a kernel that did not report `idle` at start (learned then), execute_reply
  ///    plus 300 ms; for one that did, a reply whose `idle` never comes ends 5 s later;
  ///  - `idle` without a reply: at once after an interrupt (ipykernel catches a SIGINT
  ///    that lands before the user's code and never replies), with an error event saying
  ///    the cell was interrupted; 5 s later otherwise, so no cell waits for ever;
  ///  - the kernel died.
  /// `timeout` > 0 interrupts the cell when it expires. The caller writes the terminal event.
  ///
  /// Per-cell limits of an isolated kernel: stream output past max_output_bytes (counted as
  /// the JSON-escaped text the kernel sends, so the bytes delivered stay under it) is
  /// dropped, and the cell interrupted; a cell whose CPU use (the kernel's cgroup, sampled
  /// every 250 ms) reaches cpu_time_limit_s is interrupted. A cell that is still running
  /// kLimitGrace after such an interrupt gets its kernel killed (the next cell restarts it).
  Outcome execute(const std::string& code, const std::shared_ptr<exec::EventLog>& log, std::chrono::milliseconds timeout,
                  bool interrupt_at_start = false);
  /// Interrupts the running cell: SIGINT (or interrupt_request, per the kernelspec). A
  /// signal is held back until the kernel has begun the cell (execute_input): ipykernel
  /// ignores SIGINT between cells, so an early one would be lost and the cell run on.
  void interrupt();
  /// Whether this kernel reports `idle` after its requests (learned at start).
  [[nodiscard]] bool sends_idle() const { return sends_idle_; }
  [[nodiscard]] bool is_dead() const { return client_->is_dead(); }
  [[nodiscard]] pid_t pid() const { return pid_; }
  /// The limit that killed the kernel (its cgroup's OOM counter, ...) during the last
  /// cell, once it died.
  [[nodiscard]] std::optional<isolation::LimitHit> limit_hit() const;
  [[nodiscard]] const KernelSpec& spec() const { return spec_; }

 private:
  struct Waiter;
  struct Cell;
  Kernel() = default;
  static core::Result<std::unique_ptr<Kernel>> start_once(const KernelSpec& spec, const Launch& launch);
  void send_interrupt();
  /// SIGKILL to the kernel and everything in its cgroup (a cell past a limit's grace).
  void kill_for_limit();

  KernelSpec spec_;
  std::shared_ptr<process::ChildReaper> reaper_;
  pid_t pid_ = -1;
  core::UniqueFd pidfd_;
  std::string runtime_dir_;
  std::unique_ptr<isolation::ExecutionGuard> guard_;  // null: level none without limits
  std::unique_ptr<KernelClient> client_;
  std::shared_ptr<Waiter> waiter_;
  bool sends_idle_ = false;
  isolation::CgroupUsage cell_baseline_;  // the cgroup's counters when the last cell began
};

}  // namespace execd::jupyter
