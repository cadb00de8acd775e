#pragma once

#include <sys/resource.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "commands/line_splitter.hpp"
#include "commands/output_log.hpp"
#include "core/unique_fd.hpp"
#include "exec/execution.hpp"
#include "isolation/execution_guard.hpp"
#include "process/child_reaper.hpp"
#include "process/reactor.hpp"

namespace execd::commands {

using isolation::ExecutionGuard;  // lives in isolation/ so jupyter can hold one too

/// How a command ended, for an owner that writes the terminal event itself.
struct CommandOutcome {
  int exit_code = -1;          ///< -1: killed by a signal
  std::string error;           ///< empty on success: "exit status 3", "signal: killed", a limit's message
  bool timed_out = false;
  bool limit_hit = false;      ///< a resource limit ended it (`accounting` has "killed")
  nlohmann::json accounting;   ///< duration_ms, cpu_time_ms, peak_memory_mb, io_*_bytes, exit_code, killed?
  std::shared_ptr<exec::Execution> execution;  ///< whose log the owner closes
};

/// What to run (POST /command, or /code with no language).
struct CommandSpec {
  std::string command;
  std::string cwd;                           ///< empty: the daemon's
  std::map<std::string, std::string> envs;  ///< on top of the daemon's env and EXECD_ENVS
  bool background = false;
  std::chrono::milliseconds timeout{0};      ///< 0: none
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;
  std::string stdin_data;                    ///< written to stdin first
  bool stdin_open = false;                   ///< keep stdin open for POST /command/{id}/stdin
  /// Run this argv instead of `bash -c command` (an invocation's interpreter).
  std::vector<std::string> argv;
  /// Descriptors the process gets as 3, 4, ... (process::SpawnOptions::pass_fds); the
  /// caller keeps them open until start() returns.
  std::vector<int> pass_fds;
  std::string kind;                          ///< the execution's kind; empty: (background-)command
  /// When set, the command's log is left open when it ends and this is called instead
  /// (on the reactor thread: it must only hand the work on); the owner closes the log
  /// with its own terminal event.
  std::function<void(CommandOutcome)> on_finish;
  /// Kill whatever is left of the process group when the process exits (an invocation:
  /// nothing of it may outlive it), not only after an interrupt.
  bool end_group_on_exit = false;
  /// What the process had used before it became this command (an adopted, pre-started
  /// interpreter's start-up): left out of cpu_time_ms and io_*_bytes.
  struct UsageBefore {
    std::chrono::milliseconds cpu{0};
    uint64_t io_read_bytes = 0;
    uint64_t io_write_bytes = 0;
  } usage_before;
};

/// A point-in-time view for GET /command/status/{id}.
struct CommandStatus {
  std::string id;
  std::string content;
  bool running = true;
  std::optional<int> exit_code;
  std::string error;
  std::chrono::system_clock::time_point started_at;
  std::optional<std::chrono::system_clock::time_point> finished_at;
};

class Command;
void watch_cpu(process::Reactor& reactor, const std::shared_ptr<Command>& cmd);

/// One running or finished command: its process group, its Execution (events) and its
/// OutputLog (raw bytes). Pipe and exit handling happen on the reactor thread; status
/// and stdin are safe from any thread. An isolated command also owns an ExecutionGuard
/// (cgroup, workspace, output cap), ended before its terminal event is written.
class Command : public std::enable_shared_from_this<Command> {
 public:
  Command(std::shared_ptr<exec::Execution> execution, CommandSpec spec, std::unique_ptr<OutputLog> output);

  [[nodiscard]] const std::string& id() const { return execution_->id(); }
  [[nodiscard]] const std::shared_ptr<exec::Execution>& execution() const { return execution_; }
  [[nodiscard]] const OutputLog& output() const { return *output_; }
  [[nodiscard]] bool is_background() const { return spec_.background; }
  [[nodiscard]] CommandStatus status() const;
  [[nodiscard]] bool is_running() const;
  [[nodiscard]] std::chrono::steady_clock::time_point finished_steady() const;

  /// Appends to stdin (blocking up to `timeout` while the pipe is full).
  core::Result<void> write_stdin(std::string_view bytes, std::chrono::milliseconds timeout);
  core::Result<void> close_stdin();
  /// Signals the command's whole process group (its descendants too, also after the
  /// shell itself exited) and marks it interrupted: when the shell exits, whatever is
  /// left of the group is killed. False once the group is empty.
  bool signal_group(int sig);

 private:
  friend class CommandRunner;
  friend void watch_cpu(process::Reactor& reactor, const std::shared_ptr<Command>& cmd);

  void on_output(int fd, bool is_stderr);
  void on_output_capped();
  void on_exit();
  void drain(int fd, bool is_stderr);
  void finish(int wait_status, const rusage& usage);
  void emit_lines(const std::vector<std::string>& lines, bool is_stderr);

  std::shared_ptr<exec::Execution> execution_;
  CommandSpec spec_;
  std::unique_ptr<OutputLog> output_;
  process::Reactor* reactor_ = nullptr;
  process::ChildReaper* reaper_ = nullptr;
  std::unique_ptr<ExecutionGuard> guard_;  // null: level none without limits; set before publishing

  // Set at start, then touched only on the reactor thread.
  pid_t pid_ = -1;
  core::UniqueFd pidfd_;
  core::UniqueFd stdout_fd_;
  core::UniqueFd stderr_fd_;
  LineSplitter stdout_lines_;
  LineSplitter stderr_lines_;
  std::chrono::steady_clock::time_point started_steady_;
  std::optional<process::Reactor::TimerId> timeout_timer_;

  mutable std::mutex mu_;  // guards what other threads read or write
  core::UniqueFd stdin_fd_;
  bool running_ = true;
  bool timed_out_ = false;
  bool interrupted_ = false;
  std::optional<int> exit_code_;
  std::string error_;
  std::chrono::system_clock::time_point started_at_;
  std::optional<std::chrono::system_clock::time_point> finished_at_;
  std::chrono::steady_clock::time_point finished_steady_{};
};

}  // namespace execd::commands
