#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "exec/event.hpp"
#include "metrics/prometheus.hpp"

namespace execd::metrics {

/// Counts finished executions into a Registry: `execd_executions_total{kind,outcome}` and
/// `execd_execution_duration_seconds{kind}`. Called from whichever thread closes an
/// execution's log (ExecutionRegistry's finish observer); lock-free after the first
/// execution of each kind and outcome.
class ExecutionMetrics {
 public:
  explicit ExecutionMetrics(std::shared_ptr<Registry> registry);

  /// One execution of `kind` (an Execution's kind: command, background-command, code,
  /// session-run) ended with `terminal` (empty type: closed without one) after `took`.
  void finished(const std::string& kind, const exec::Event& terminal, std::chrono::nanoseconds took);

  /// The metric label for an Execution kind: command, session or cell.
  static std::string_view kind_label(std::string_view kind);
  /// What a terminal event says about the end: success, failure, timeout, killed (a
  /// resource limit), interrupted, kernel_died, or abandoned (no terminal event).
  static std::string_view outcome_of(const exec::Event& terminal);

 private:
  std::shared_ptr<Registry> registry_;
};

}  // namespace execd::metrics
