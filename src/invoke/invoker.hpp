#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "commands/command_runner.hpp"
#include "core/result.hpp"
#include "exec/execution.hpp"
#include "exec/execution_registry.hpp"
#include "invoke/handler_bootstrap.hpp"
#include "invoke/node_spares.hpp"
#include "invoke/zygote.hpp"
#include "isolation/limits.hpp"
#include "process/child_reaper.hpp"
#include "process/reactor.hpp"

namespace execd::invoke {

/// How an invocation may start: warm (forked by the language's zygote, falling back to a
/// cold start when the zygote cannot serve it) or cold (a fresh interpreter, always).
enum class StartMode { warm, cold };

/// "warm" | "cold"; invalid_argument naming the field otherwise.
core::Result<StartMode> parse_start_mode(std::string_view text);

/// One call of a serverless-style handler (POST /invoke).
struct InvokeSpec {
  Language language = Language::python;
  std::string code;
  nlohmann::json event;                      ///< any JSON; null when absent
  std::chrono::milliseconds timeout{0};      ///< 0: none
  std::map<std::string, std::string> envs;
  StartMode start = StartMode::warm;
};

/// Runs handlers: each invocation is a fresh process that no other invocation shares.
/// Warm (isolation level none or process, the default): Python, a child forked by the
/// Python Zygote, which applies the invocation's session, cgroup, rlimits and
/// no_new_privs before the bootstrap runs, followed by a ZygoteRun; JavaScript and
/// TypeScript, a node spare started ahead (NodeSpares), given the invocation's cgroup and
/// rlimits before its request is written to its stdin, then followed by the
/// CommandRunner as a cold start is (CommandRunner::adopt). Cold (asked for, namespace
/// level, warm starts turned off, or no zygote or spare able to serve it just now): an
/// interpreter started through bootstrap_argv() as a command of kind "invocation" in the
/// CommandRunner, with its isolation and limits. The code and the event go
/// in on stdin; the return value comes back on descriptor 3, a memfd that only the
/// bootstrap writes (never parsed out of stdout). Each invocation runs in a fresh
/// working directory under `work_base`; files left there are its artifacts, listed with
/// SHA-256 and a /files/download path, and kept for `retention`.
///
/// Warm or cold, the invocation's execution carries an interrupter (DELETE /command?id=):
/// SIGINT, SIGTERM, SIGKILL to its group, kill_grace apart; one that did not return is
/// then `killed` with error type "Interrupted" and `"interrupted": true`.
///
/// When the process ends, a worker thread (never the reactor) builds the result
/// document — id, status (success | failed | timeout | killed), return_value, stdout,
/// stderr (each capped, with truncated flags), exit_code, error {type, message,
/// traceback}, artifacts, metrics, start ("warm" | "cold"), cold_reason (why a warm start
/// asked for did not happen; else null), interrupted — and closes the execution's log with
/// one terminal event of type kResultEvent carrying it: SSE readers, pollers and
/// wait() all see the same document. Thread-safe.
class Invoker {
 public:
  static constexpr const char* kResultEvent = "invoke_result";

  struct Options {
    Runtimes runtimes;
    std::string work_base;                         ///< working directories go here (created)
    std::chrono::seconds retention{600};           ///< working directories kept this long
    uint64_t max_stream_bytes = 1 << 20;           ///< stdout and stderr each, in the document
    uint64_t max_return_bytes = 16 << 20;          ///< the encoded return value
    size_t max_artifacts = 1000;
    uint64_t artifact_hash_budget = 256ull << 20;  ///< bytes hashed per invocation
    bool warm_start = true;                        ///< false: every invocation starts cold (--warm-invoke off)
    size_t node_spares = 1;                        ///< spares per JavaScript/TypeScript flavour; 0: they start cold
    std::string envs_file;                         ///< EXECD_ENVS lines, as commands get them
    std::chrono::milliseconds kill_grace{3000};    ///< SIGINT -> SIGTERM -> SIGKILL steps of a warm timeout or interrupt
  };

  Invoker(std::shared_ptr<commands::CommandRunner> runner, std::shared_ptr<process::Reactor> reactor,
          std::shared_ptr<process::ChildReaper> reaper, std::shared_ptr<exec::ExecutionRegistry> executions,
          Options options);
  ~Invoker();
  Invoker(const Invoker&) = delete;
  Invoker& operator=(const Invoker&) = delete;

  /// Starts the invocation; its execution's log ends with the result document. Bad
  /// input is invalid_argument naming the field; a missing runtime is not_supported.
  core::Result<std::shared_ptr<exec::Execution>> start(InvokeSpec spec, const isolation::Limits& limits);

  /// The result document once `execution` has ended, waiting at most `wait`;
  /// unavailable when it has not ended by then.
  static core::Result<nlohmann::json> wait(const exec::Execution& execution, std::chrono::milliseconds wait);

 private:
  struct Job;
  /// Ended invocations waiting for the worker. Commands hold it weakly: one that ends
  /// after the Invoker is gone closes its own log instead.
  struct Queue {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::shared_ptr<Job>> jobs;
    bool stopping = false;
  };
  /// Marks `job` interrupted and runs `signal` (the command's or the warm run's
  /// interrupt); the mark is undone when nothing was signalled.
  template <typename Signal>
  static core::Result<void> interrupt_with(const std::weak_ptr<Job>& job, Signal&& signal);
  void run_worker();
  void finish(Job& job);
  void sweep_work_dirs();
  std::function<void(commands::CommandOutcome)> finisher(const std::shared_ptr<Job>& job);
  /// The invocation started warm; an error (not returned to the caller: its message is
  /// the result's `cold_reason`) means it starts cold.
  core::Result<std::shared_ptr<exec::Execution>> start_warm(InvokeSpec& spec, const isolation::Limits& limits,
                                                            const std::shared_ptr<Job>& job);
  /// Python: a child forked by the zygote.
  core::Result<std::shared_ptr<exec::Execution>> start_forked(InvokeSpec& spec, const isolation::Limits& limits,
                                                              const std::shared_ptr<Job>& job);
  /// JavaScript, TypeScript: a node spare, adopted by the CommandRunner as the
  /// invocation's command once its cgroup and rlimits are on it.
  core::Result<std::shared_ptr<exec::Execution>> start_spare(InvokeSpec& spec, const isolation::Limits& limits,
                                                             const std::shared_ptr<Job>& job);
  /// The interrupter of an invocation run as a command of the runner (cold, or a spare).
  void interrupt_as_command(const std::shared_ptr<exec::Execution>& execution, const std::shared_ptr<Job>& job);

  std::shared_ptr<commands::CommandRunner> runner_;
  std::shared_ptr<process::Reactor> reactor_;
  std::shared_ptr<exec::ExecutionRegistry> executions_;
  Options options_;
  std::unique_ptr<Zygote> python_zygote_;  // null when warm starts are off; starts its process lazily
  std::unique_ptr<NodeSpares> node_spares_;  // null when warm starts or node spares are off
  std::shared_ptr<Queue> queue_ = std::make_shared<Queue>();
  std::mutex sweep_mu_;
  std::chrono::steady_clock::time_point last_sweep_{};
  std::thread worker_;
};

}  // namespace execd::invoke
