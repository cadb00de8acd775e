#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "commands/line_splitter.hpp"
#include "core/result.hpp"
#include "core/unique_fd.hpp"
#include "exec/execution.hpp"
#include "isolation/execution_guard.hpp"
#include "process/child_reaper.hpp"
#include "process/reactor.hpp"

namespace execd::commands {

using isolation::ExecutionGuard;  // lives in isolation/ so jupyter can hold one too

/// One run in a session (POST /session/{id}/run).
struct SessionRunSpec {
  std::string command;
  std::string cwd;                        ///< empty: where the last run left off
  std::chrono::milliseconds timeout{0};   ///< 0: none
};

/// A persistent `bash --noprofile --norc` in its own process group, so `cd`, `export`,
/// shell variables and functions persist from one run to the next.
///
/// The shell runs a small loop that reads `seq NUL cwd NUL command NUL` records from its
/// stdin and evals each command inside a function (stdin /dev/null, stderr merged into
/// stdout), then prints a marker line with a per-session random token, the run's seq and
/// its exit status. A SIGINT trap returns from that function, so a timeout stops the run
/// and not the shell. Output lines go to the current run's Execution as `stdout` events
/// (blank lines dropped, as clients of /session expect). One run at a time.
class BashSession : public std::enable_shared_from_this<BashSession> {
 public:
  struct Options {
    std::chrono::milliseconds kill_grace{3000};
    std::vector<std::string> env;  ///< the shell's whole environment
    /// The whole session's isolation: the shell starts inside it once (at namespace level
    /// one bwrap sandbox for the session's life), so a run costs no more than in a plain
    /// session. Memory and process limits bound the session as a whole; each run's
    /// output is capped at max_output_bytes; a limit that ends a run is named in its
    /// terminal event. Needs `isolator` unless level none without limits.
    isolation::Limits limits;
    std::shared_ptr<isolation::Isolator> isolator;
  };

  /// Starts the shell in `cwd`.
  static core::Result<std::shared_ptr<BashSession>> start(std::string id, const std::string& cwd,
                                                          std::shared_ptr<process::Reactor> reactor,
                                                          std::shared_ptr<process::ChildReaper> reaper,
                                                          Options options);
  ~BashSession();

  [[nodiscard]] const std::string& id() const { return id_; }
  /// Runs one command; its events go to `execution`, whose log this closes with exactly
  /// one terminal event. conflict while another run is going or after the shell ended.
  core::Result<void> run(const SessionRunSpec& spec, std::shared_ptr<exec::Execution> execution);
  /// Interrupts the current run as a timeout would (conflict if none).
  core::Result<void> interrupt();
  /// Kills the shell's whole group and waits (bounded) until it has been reaped.
  void terminate();
  [[nodiscard]] bool is_alive() const;
  [[nodiscard]] bool is_busy() const;
  /// The shell runs in a bwrap sandbox: a run's cwd is a path inside it.
  [[nodiscard]] bool in_namespace() const { return guard_ && guard_->in_namespace(); }

 private:
  struct Run {
    uint64_t seq = 0;
    std::shared_ptr<exec::Execution> execution;
    std::chrono::steady_clock::time_point started;
    uint64_t cpu_before_ms = 0;
    bool timed_out = false;
    bool output_capped = false;
    uint64_t output_bytes = 0;
    isolation::CgroupUsage baseline;  // the session cgroup's counters when the run began
    std::chrono::milliseconds timeout{0};
    std::optional<process::Reactor::TimerId> timer;
  };

  BashSession(std::string id, std::shared_ptr<process::Reactor> reactor, std::shared_ptr<process::ChildReaper> reaper,
              Options options);
  void on_output();
  void on_exit();
  void handle_line(const std::string& line);
  void finish_run(int exit_code, const std::string& why);
  void escalate(uint64_t seq, int step);
  void signal_children(int sig);
  core::Result<void> find_sandboxed_shell();

  std::string id_;
  std::shared_ptr<process::Reactor> reactor_;
  std::shared_ptr<process::ChildReaper> reaper_;
  Options options_;
  std::string marker_;  // per-session random token that starts the end-of-run line

  // Set at start; output and exit handling run on the reactor thread.
  pid_t pid_ = -1;        // the spawned child: the shell, or at namespace level bwrap
  pid_t shell_pid_ = -1;  // the shell itself (host pid); pid_ unless sandboxed
  pid_t shell_pgid_ = -1;  // the group its runs' processes are in; pid_ unless sandboxed
  std::unique_ptr<ExecutionGuard> guard_;
  core::UniqueFd pidfd_;
  core::UniqueFd out_fd_;
  LineSplitter lines_{false, 16 * 1024 * 1024};

  mutable std::mutex mu_;
  core::UniqueFd in_fd_;
  bool alive_ = true;
  uint64_t next_seq_ = 1;
  std::optional<Run> run_;
};

}  // namespace execd::commands
