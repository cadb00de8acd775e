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
#include "invoke/handler_bootstrap.hpp"
#include "isolation/limits.hpp"

namespace execd::invoke {

/// One call of a serverless-style handler (POST /invoke).
struct InvokeSpec {
  Language language = Language::python;
  std::string code;
  nlohmann::json event;                      ///< any JSON; null when absent
  std::chrono::milliseconds timeout{0};      ///< 0: none
  std::map<std::string, std::string> envs;
};

/// Runs handlers: each invocation is a fresh interpreter process (a command of kind
/// "invocation" in the CommandRunner, with its isolation and limits) that no other
/// invocation shares, started cold through bootstrap_argv(). The code and the event go
/// in on stdin; the return value comes back on descriptor 3, a memfd that only the
/// bootstrap writes (never parsed out of stdout). Each invocation runs in a fresh
/// working directory under `work_base`; files left there are its artifacts, listed with
/// SHA-256 and a /files/download path, and kept for `retention`.
///
/// When the process ends, a worker thread (never the reactor) builds the result
/// document — id, status (success | failed | timeout | killed), return_value, stdout,
/// stderr (each capped, with truncated flags), exit_code, error {type, message,
/// traceback}, artifacts, metrics, start ("cold") — and closes the execution's log with
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
  };

  Invoker(std::shared_ptr<commands::CommandRunner> runner, Options options);
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
  void run_worker();
  void finish(Job& job);
  void sweep_work_dirs();

  std::shared_ptr<commands::CommandRunner> runner_;
  Options options_;
  std::shared_ptr<Queue> queue_ = std::make_shared<Queue>();
  std::mutex sweep_mu_;
  std::chrono::steady_clock::time_point last_sweep_{};
  std::thread worker_;
};

}  // namespace execd::invoke
