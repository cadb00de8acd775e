#include "metrics/execution_metrics.hpp"

#include <nlohmann/json.hpp>

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

std::string_view ExecutionMetrics::outcome_of(const exec::Event& terminal) {
  if (terminal.type.empty()) return "abandoned";
  if (terminal.type == "execution_complete") return "success";
  const auto j = nlohmann::json::parse(terminal.json, nullptr, false);
  if (!j.is_object()) return "failure";
  if (j.contains("killed")) return "killed";
  const auto error = j.value("error", nlohmann::json::object());
  const std::string ename = error.is_object() ? error.value("ename", "") : "";
  if (ename == "KernelKilledByLimit") return "killed";
  if (ename == "KeyboardInterrupt") return "interrupted";
  if (ename == "DeadKernelError") return "kernel_died";
  // Commands say "timeout after N ms (...)" in their traceback; cells in their evalue.
  const auto says_timeout = [](const nlohmann::json& v) {
    return v.is_string() && v.get<std::string>().find("timeout") != std::string::npos;
  };
  if (error.is_object()) {
    if (says_timeout(error.value("evalue", nlohmann::json()))) return "timeout";
    const auto tb = error.value("traceback", nlohmann::json::array());
    if (tb.is_array() && !tb.empty() && says_timeout(tb.front())) return "timeout";
  }
  return "failure";
}

void ExecutionMetrics::finished(const std::string& kind, const exec::Event& terminal, std::chrono::nanoseconds took) {
  const std::string k(kind_label(kind));
  registry_
      ->counter("execd_executions_total", "Executions finished, by kind and outcome.",
                {{"kind", k}, {"outcome", std::string(outcome_of(terminal))}})
      .inc();
  registry_
      ->histogram("execd_execution_duration_seconds", "Wall time of finished executions, by kind.", kDurationBounds,
                  {{"kind", k}})
      .observe(std::chrono::duration<double>(took).count());
}

}  // namespace execd::metrics
