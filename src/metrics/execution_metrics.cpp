#include "metrics/execution_metrics.hpp"

namespace execd::metrics {
namespace {

// Seconds: from a quick `echo` to a long notebook cell.
const std::vector<double> kDurationBounds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};

}  // namespace

ExecutionMetrics::ExecutionMetrics(std::shared_ptr<Registry> registry) : registry_(std::move(registry)) {}

std::string_view ExecutionMetrics::kind_label(std::string_view kind) {
  if (kind == "code") return "cell";
  if (kind == "session-run") return "session";
  if (kind == "command" || kind == "background-command") return "command";
  return kind;
}

void ExecutionMetrics::finished(const std::string& kind, const exec::ExecutionOutcome& outcome, std::chrono::nanoseconds took) {
  const std::string k(kind_label(kind));
  registry_
      ->counter("execd_executions_total", "Executions finished, by kind and outcome.",
                {{"kind", k}, {"outcome", outcome.reason}})
      .inc();
  registry_
      ->histogram("execd_execution_duration_seconds", "Wall time of finished executions, by kind.", kDurationBounds,
                  {{"kind", k}})
      .observe(std::chrono::duration<double>(took).count());
}

}  // namespace execd::metrics
