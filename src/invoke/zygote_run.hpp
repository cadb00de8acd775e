#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "commands/command.hpp"
#include "commands/line_splitter.hpp"
#include "core/result.hpp"
#include "core/unique_fd.hpp"
#include "exec/execution.hpp"
#include "invoke/zygote.hpp"
#include "isolation/execution_guard.hpp"
#include "process/reactor.hpp"

namespace execd::invoke {

/// One invocation started warm: a child the Zygote forked, followed the way
/// commands::Command follows a spawned process. Its stdout and stderr are pipes the
/// reactor reads into the execution's log line by line (capped by max_output_bytes);
/// its timeout, and interrupt(), escalate SIGINT -> SIGTERM -> SIGKILL to its process group (and its
/// cgroup's members, through the ExecutionGuard); when the zygote reports it reaped,
/// whatever is left of its group and cgroup is killed (nothing of one invocation
/// outlives it) and `on_finish` gets a CommandOutcome built as a command's is: exit
/// code, error text, timeout, the limit that ended it, and accounting from the child's
/// rusage (which the zygote, its parent, collected) plus the cgroup's view.
/// Output and exit handling run on the reactor thread; start() on the caller's.
class ZygoteRun : public std::enable_shared_from_this<ZygoteRun> {
 public:
  struct Setup {
    std::shared_ptr<exec::Execution> execution;
    std::unique_ptr<isolation::ExecutionGuard> guard;  ///< null: no limits, level none
    const isolation::ChildSteps* steps = nullptr;      ///< the guard's child steps, if any
    std::string cwd;
    std::vector<std::string> env;
    std::string stdin_data;  ///< written to stdin, which is then closed
    int result_fd = -1;      ///< becomes the child's descriptor 3 (the caller keeps its own)
    std::chrono::milliseconds timeout{0};
    std::chrono::milliseconds kill_grace{3000};
    /// Called once, on the reactor thread; it must only hand the work on.
    std::function<void(commands::CommandOutcome)> on_finish;
  };

  /// Forks the child through `zygote` and returns once it runs (the execution's `init`
  /// is logged). unavailable when the zygote cannot be used: nothing ran, and the caller
  /// discards the execution and may start the invocation cold instead.
  static core::Result<std::shared_ptr<ZygoteRun>> start(Zygote& zygote, process::Reactor& reactor, Setup setup);

  ZygoteRun(process::Reactor& reactor, Setup setup);
  ~ZygoteRun();

  /// Interrupts the child as a command is: SIGINT, then SIGTERM and SIGKILL after
  /// kill_grace each, to its process group (and cgroup). conflict once it has ended. Any
  /// thread.
  core::Result<void> interrupt();

 private:
  void on_output(int fd, bool is_stderr);
  bool drain(int fd, bool is_stderr);  ///< false when nothing was read
  void on_exit(const ZygoteExit& x);
  bool signal_group(int sig);
  void escalate(int step);
  void watch_cpu();

  process::Reactor& reactor_;
  Setup setup_;
  // Reactor thread only (after start() has published them).
  core::UniqueFd stdout_fd_, stderr_fd_;
  commands::LineSplitter stdout_lines_, stderr_lines_;
  std::chrono::steady_clock::time_point started_;

  mutable std::mutex mu_;
  pid_t pid_ = -1;
  bool finished_ = false;
  bool timed_out_ = false;
  bool escalating_ = false;  // a timeout or an interrupt has started the signal sequence
  std::optional<process::Reactor::TimerId> timeout_timer_;
};

}  // namespace execd::invoke
