#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "commands/command.hpp"
#include "core/result.hpp"
#include "exec/execution_registry.hpp"
#include "isolation/isolator.hpp"
#include "process/reactor.hpp"

namespace execd::commands {

/// Starts shell commands (`bash -c`, each in its own process group), tracks them by id,
/// interrupts them, and evicts finished ones after the retention. Events go to each
/// command's Execution in the shared registry. Thread-safe.
class CommandRunner {
 public:
  struct Options {
    std::chrono::milliseconds kill_grace{3000};  ///< SIGINT -> SIGTERM -> SIGKILL steps
    std::string envs_file;                       ///< EXECD_ENVS: KEY=VALUE lines
    std::string spill_dir;                       ///< where output logs live
    std::chrono::seconds retention{600};
    /// The daemon's isolation service (defaults, capabilities, cgroups); null: every
    /// command runs at level none without limits.
    std::shared_ptr<isolation::Isolator> isolator;
  };

  CommandRunner(std::shared_ptr<process::Reactor> reactor, std::shared_ptr<process::ChildReaper> reaper,
                std::shared_ptr<exec::ExecutionRegistry> executions, Options options);
  ~CommandRunner();  ///< kills every running group and waits for it

  /// Validates, spawns, and returns once the process runs (its `init` event is in the
  /// log). Bad input -> invalid_argument naming the field. Runs at the daemon's default
  /// isolation and limits.
  core::Result<std::shared_ptr<Command>> start(CommandSpec spec);
  /// The same at `limits` (parsed from the request by api::parse_isolation_fields). At
  /// level process or namespace the environment is EXECD_ENVS plus the request's envs
  /// only; a limit that ends the command is named in its terminal event (`killed`).
  core::Result<std::shared_ptr<Command>> start(CommandSpec spec, const isolation::Limits& limits);
  /// Runs `spec` in `child`, a process started before it was asked for (an invocation's
  /// spare interpreter, blocked reading its stdin), as start() runs the process it
  /// spawns from then on: `execution`'s `init`, spec.stdin_data written and stdin closed,
  /// pipes read, timeout, interrupt(), the guard's cgroup, output cap and CPU watch, the
  /// terminal event or on_finish. The caller made `execution` and `guard` (null: level
  /// none without limits) and has already applied the guard's steps to `child`
  /// (ChildSteps::apply_to); spec.argv, cwd, envs and uid are not used.
  std::shared_ptr<Command> adopt(std::shared_ptr<exec::Execution> execution, CommandSpec spec, process::Child child,
                                 std::unique_ptr<ExecutionGuard> guard);
  /// Null when isolation is not configured.
  [[nodiscard]] const std::shared_ptr<isolation::Isolator>& isolator() const { return options_.isolator; }
  [[nodiscard]] std::shared_ptr<Command> find(const std::string& id) const;
  /// SIGINT to the group now, SIGTERM after the grace, SIGKILL after another.
  core::Result<void> interrupt(const std::string& id);
  /// Kills every running command group (daemon shutdown).
  void shutdown();

 private:
  void sweep();
  /// What start() and adopt() share once the process runs.
  std::shared_ptr<Command> run(std::shared_ptr<exec::Execution> execution, CommandSpec spec, process::Child child,
                               std::unique_ptr<ExecutionGuard> guard);

  std::shared_ptr<process::Reactor> reactor_;
  std::shared_ptr<process::ChildReaper> reaper_;
  std::shared_ptr<exec::ExecutionRegistry> executions_;
  Options options_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<Command>> commands_;
  std::chrono::steady_clock::time_point last_sweep_{};
};

/// SIGINT to the command's group now (step 0), SIGTERM after `grace`, SIGKILL after
/// another, stopping as soon as the command has exited.
void escalate(process::Reactor& reactor, const std::shared_ptr<Command>& cmd, std::chrono::milliseconds grace,
              int step = 0);

/// The environment a command gets: the daemon's, then EXECD_ENVS lines, then `extra`.
std::vector<std::string> command_environment(const std::string& envs_file,
                                             const std::map<std::string, std::string>& extra);
/// The environment an isolated (process, namespace) command gets: EXECD_ENVS lines, then
/// `extra`, and nothing of the daemon's (its token, its secrets); Isolator adds PATH and
/// HOME when neither gave them.
std::vector<std::string> isolated_environment(const std::string& envs_file,
                                              const std::map<std::string, std::string>& extra);

/// Checks `cmd`'s cgroup CPU usage every interval while it runs and kills it (naming the
/// limit) once the whole execution has used cpu_time_limit_s: RLIMIT_CPU alone bounds
/// each process, not the sum of many.
void watch_cpu(process::Reactor& reactor, const std::shared_ptr<Command>& cmd);

/// `cwd` expanded (core::expand_path); invalid_argument unless it names an existing directory.
core::Result<std::string> existing_directory(const std::string& cwd);

}  // namespace execd::commands
