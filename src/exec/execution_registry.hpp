#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/result.hpp"
#include "exec/execution.hpp"

namespace execd::exec {

/// Every execution by id, for replay and polling. Finished executions (closed logs) are
/// evicted `retention` after they finished, lazily on create(), so a daemon that has run
/// ten thousand commands holds only the recent ones. Thread-safe.
class ExecutionRegistry {
 public:
  ExecutionRegistry(EventLog::Options log_options, std::chrono::seconds retention);

  /// Told of every execution created from now on when its log closes: its kind, how it
  /// ended (ExecutionOutcome::from_terminal) and how long it ran. Set once, at start-up.
  using FinishObserver =
      std::function<void(const std::string& kind, const ExecutionOutcome& outcome, std::chrono::nanoseconds took)>;
  void set_finish_observer(FinishObserver observer);

  /// A new execution with a fresh id (or `id` when given and unused).
  std::shared_ptr<Execution> create(const std::string& kind, const std::string& id = {});
  [[nodiscard]] std::shared_ptr<Execution> find(const std::string& id) const;
  void remove(const std::string& id);
  /// Evicts finished executions older than the retention; returns how many.
  size_t sweep();
  [[nodiscard]] size_t size() const;

  /// GET /executions: retained executions newest first.
  struct ListQuery {
    std::string kind;    ///< empty: any
    std::string status;  ///< "running", or an ExecutionOutcome status; empty: any
    size_t limit = 100;
    std::string after;   ///< an id: only executions older than it (the next page)
  };
  /// invalid_argument naming 'after' when it is no retained execution.
  [[nodiscard]] core::Result<std::vector<std::shared_ptr<Execution>>> list(const ListQuery& query) const;

 private:
  struct Entry {
    std::shared_ptr<Execution> execution;
    std::chrono::steady_clock::time_point closed_seen{};  // first sweep that saw it closed
  };

  EventLog::Options log_options_;
  FinishObserver observer_;
  std::chrono::seconds retention_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> by_id_;
  std::chrono::steady_clock::time_point last_sweep_{};
};

}  // namespace execd::exec
