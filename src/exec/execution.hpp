#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "exec/event_log.hpp"

namespace execd::exec {

/// One run of something (a command, a code cell, a session run): its id, what kind it
/// is, and its EventLog. Domain modules keep their own state beside it (the process, the
/// kernel request); the Execution is what HTTP readers attach to.
/// How an execution ended, read once from its terminal event (for GET /executions).
struct ExecutionOutcome {
  /// "success", "failed", "timeout", "killed", or "ended" (closed without a terminal event).
  std::string status;
  std::chrono::system_clock::time_point finished_at{};
  /// duration_ms, cpu_time_ms, peak_memory_mb, io_read_bytes, io_write_bytes, exit_code:
  /// whichever the terminal event carried.
  nlohmann::json metrics = nlohmann::json::object();

  /// From a terminal event: execution_complete is a success; an `error` with `killed` a
  /// kill, one whose traceback says "timeout after" a timeout, other errors failures;
  /// an invoke_result carries its own status.
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
  void set_outcome(ExecutionOutcome outcome) {
    std::lock_guard<std::mutex> lock(mu_);
    outcome_ = std::move(outcome);
  }

 private:
  std::string id_;
  std::string kind_;
  std::shared_ptr<EventLog> log_;
  std::chrono::system_clock::time_point started_;
  mutable std::mutex mu_;
  std::optional<ExecutionOutcome> outcome_;
};

}  // namespace execd::exec
