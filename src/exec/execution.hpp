#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/result.hpp"
#include "exec/event_log.hpp"

namespace execd::exec {

/// One run of something (a command, a code cell, a session run): its id, what kind it
/// is, and its EventLog. Domain modules keep their own state beside it (the process, the
/// kernel request); the Execution is what HTTP readers attach to.
/// How an execution ended, read once from its terminal event (for GET /executions).
struct ExecutionOutcome {
  /// Why it ended, the Prometheus `outcome` label: "success", "failure", "killed",
  /// "timeout", "interrupted", "kernel_died", or "abandoned" (closed without a terminal event).
  std::string reason;
  std::chrono::system_clock::time_point finished_at{};
  /// duration_ms, cpu_time_ms, peak_memory_mb, io_read_bytes, io_write_bytes, exit_code:
  /// whichever the terminal event carried.
  nlohmann::json metrics = nlohmann::json::object();

  /// GET /executions' status: "success", "failed" (failure, interrupted, kernel_died),
  /// "timeout", "killed", or "ended" (abandoned).
  [[nodiscard]] std::string status() const;

  /// From a terminal event, parsed once here for every reader (history, metrics,
  /// callbacks): execution_complete is a success; an `error` with `killed` (or a kernel
  /// killed by a limit) a kill; a timeout named in its evalue or traceback a timeout;
  /// KeyboardInterrupt and DeadKernelError their own reasons; an invoke_result carries
  /// its own status.
  static ExecutionOutcome from_terminal(const Event& terminal);
};

class Execution {
 public:
  Execution(std::string id, std::string kind, EventLog::Options log_options)
      : id_(std::move(id)), kind_(std::move(kind)), log_(std::make_shared<EventLog>(std::move(log_options))),
        started_(std::chrono::system_clock::now()) {}

  [[nodiscard]] const std::string& id() const { return id_; }
  [[nodiscard]] const std::string& kind() const { return kind_; }
  [[nodiscard]] const std::shared_ptr<EventLog>& log() const { return log_; }
  [[nodiscard]] std::chrono::system_clock::time_point started_at() const { return started_; }
  /// Set once when the log closes (ExecutionRegistry does it); nullopt while running.
  [[nodiscard]] std::optional<ExecutionOutcome> outcome() const {
    std::lock_guard<std::mutex> lock(mu_);
    return outcome_;
  }
  /// Records how it ended and runs the finish hooks (the registry calls it when the log
  /// closes, on the closing thread).
  void finish(ExecutionOutcome outcome, const Event& terminal) {
    std::vector<FinishHook> hooks;
    Interrupter interrupter;  // released outside the lock: it may hold its owner
    {
      std::lock_guard<std::mutex> lock(mu_);
      outcome_ = std::move(outcome);
      hooks.swap(hooks_);
      interrupter.swap(interrupter_);
    }
    for (auto& h : hooks) h(*this, terminal);
  }
  /// Runs `hook` with the terminal event once the execution has ended: now, on this
  /// thread, if it already has; else on the thread that ends it (keep it short).
  using FinishHook = std::function<void(const Execution&, const Event& terminal)>;
  void when_finished(FinishHook hook) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!outcome_) {
        hooks_.push_back(std::move(hook));
        return;
      }
    }
    // Ended already: the terminal event is the log's last (kept there, not copied here).
    Event terminal;
    if (outcome()->reason != "abandoned") {
      Cursor cursor{log_->last_seq() > 0 ? log_->last_seq() - 1 : 0};
      auto last = log_->read(cursor, 1, std::chrono::milliseconds(0));
      if (!last.events.empty()) terminal = std::move(last.events.back());
    }
    hook(*this, terminal);
  }
  /// How its owner interrupts it while it runs, for owners that the command routes do not
  /// know (an invocation: SIGINT, SIGTERM, SIGKILL to its process group and cgroup); set
  /// once after start, dropped when the execution ends.
  using Interrupter = std::function<core::Result<void>()>;
  void set_interrupter(Interrupter interrupter) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!outcome_) interrupter_ = std::move(interrupter);
  }
  [[nodiscard]] bool has_interrupter() const {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<bool>(interrupter_);
  }
  /// Runs the interrupter (outside the lock); conflict once the execution has ended.
  [[nodiscard]] core::Result<void> interrupt() const {
    Interrupter interrupter;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (outcome_ || !interrupter_) return core::make_error(core::Errc::conflict, "execution " + id_ + " is not running");
      interrupter = interrupter_;
    }
    return interrupter();
  }
  /// A result callback's delivery state (null: none asked).
  [[nodiscard]] nlohmann::json callback_state() const {
    std::lock_guard<std::mutex> lock(mu_);
    return callback_state_;
  }
  void set_callback_state(nlohmann::json state) {
    std::lock_guard<std::mutex> lock(mu_);
    callback_state_ = std::move(state);
  }

 private:
  std::string id_;
  std::string kind_;
  std::shared_ptr<EventLog> log_;
  std::chrono::system_clock::time_point started_;
  mutable std::mutex mu_;
  std::optional<ExecutionOutcome> outcome_;
  std::vector<FinishHook> hooks_;
  Interrupter interrupter_;
  nlohmann::json callback_state_;
};

}  // namespace execd::exec
