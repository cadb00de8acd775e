#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "exec/execution.hpp"
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
  /// session-run, invocation) ended as `outcome` says (its reason is the outcome label)
  /// after `took`.
  void finished(const std::string& kind, const exec::ExecutionOutcome& outcome, std::chrono::nanoseconds took);

  /// The metric label for an Execution kind: command, session or cell.
  static std::string_view kind_label(std::string_view kind);

 private:
  std::shared_ptr<Registry> registry_;
};

}  // namespace execd::metrics
