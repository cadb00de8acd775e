// metrics::Registry: the text exposition format 0.0.4, exactly, and increments from many
// threads at once.
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "exec/event.hpp"
#include "metrics/execution_metrics.hpp"
#include "metrics/prometheus.hpp"

using namespace execd;

TEST_CASE("prometheus: counters, gauges and callbacks render with HELP, TYPE and labels") {
  metrics::Registry r;
  r.counter("jobs_total", "Jobs done.", {{"kind", "a"}}).inc();
  r.counter("jobs_total", "ignored: the first help stays", {{"kind", "b"}}).inc(2.5);
  r.counter("jobs_total", "", {{"kind", "a"}}).inc();
  r.gauge("queue_depth", "Items waiting.").set(-3);
  double seen = 7;
  r.gauge_callback("live_value", "Read at render.", {{"q", "x\"y\\z\nw"}}, [&] { return seen; });
  const std::string expected =
      "# HELP jobs_total Jobs done.\n"
      "# TYPE jobs_total counter\n"
      "jobs_total{kind=\"a\"} 2\n"
      "jobs_total{kind=\"b\"} 2.5\n"
      "# HELP queue_depth Items waiting.\n"
      "# TYPE queue_depth gauge\n"
      "queue_depth -3\n"
      "# HELP live_value Read at render.\n"
      "# TYPE live_value gauge\n"
      "live_value{q=\"x\\\"y\\\\z\\nw\"} 7\n";
  CHECK(r.render() == expected);
  seen = 8;
  CHECK(r.render().find("live_value{q=\"x\\\"y\\\\z\\nw\"} 8\n") != std::string::npos);
}

TEST_CASE("prometheus: histograms render cumulative buckets, +Inf, sum and count") {
  metrics::Registry r;
  auto& h = r.histogram("latency_seconds", "How long.", {0.25, 1}, {{"route", "/x"}});
  h.observe(0.125);
  h.observe(0.25);  // on the bound: counts in le="0.25"
  h.observe(0.5);
  h.observe(7);
  CHECK(r.render() ==
        "# HELP latency_seconds How long.\n"
        "# TYPE latency_seconds histogram\n"
        "latency_seconds_bucket{route=\"/x\",le=\"0.25\"} 2\n"
        "latency_seconds_bucket{route=\"/x\",le=\"1\"} 3\n"
        "latency_seconds_bucket{route=\"/x\",le=\"+Inf\"} 4\n"
        "latency_seconds_sum{route=\"/x\"} 7.875\n"
        "latency_seconds_count{route=\"/x\"} 4\n");
}

TEST_CASE("prometheus: a name reused for another type is not exported twice") {
  metrics::Registry r;
  r.counter("thing", "A counter.").inc();
  r.gauge("thing", "Not a gauge.").set(5);  // a separate, unexported series
  CHECK(r.render() == "# HELP thing A counter.\n# TYPE thing counter\nthing 1\n");
}

TEST_CASE("prometheus: values format as the text format wants") {
  CHECK(metrics::format_value(1) == "1");
  CHECK(metrics::format_value(0.25) == "0.25");
  CHECK(metrics::format_value(1e21) == "1e+21");
  CHECK(metrics::format_value(1.0 / 0.0) == "+Inf");
  CHECK(metrics::format_value(-1.0 / 0.0) == "-Inf");
  CHECK(metrics::format_value(0.0 / 0.0) == "NaN");
}

TEST_CASE("prometheus: increments from many threads are all counted") {
  metrics::Registry r;
  auto& c = r.counter("hits_total", "Hits.");
  auto& h = r.histogram("sizes", "Sizes.", {10});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        c.inc();
        h.observe(i % 20);
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(c.value() == 40000);
  CHECK(h.count() == 40000);
  CHECK(h.cumulative(0) == 4 * 5500);  // 0..10 of every 20
}

TEST_CASE("execution metrics: kinds and outcomes from terminal events") {
  using M = metrics::ExecutionMetrics;
  // The outcome label is the one classification of a terminal event (exec::ExecutionOutcome).
  const auto reason = [](const exec::Event& e) { return exec::ExecutionOutcome::from_terminal(e).reason; };
  const auto outcome = [](const exec::Event& e) { return exec::ExecutionOutcome::from_terminal(e); };
  CHECK(M::kind_label("code") == "cell");
  CHECK(M::kind_label("background-command") == "command");
  CHECK(M::kind_label("session-run") == "session");
  CHECK(reason(exec::events::execution_complete(5)) == "success");
  CHECK(reason(exec::Event{}) == "abandoned");
  CHECK(reason(exec::events::error("CommandExecError", "2", {"exit status 2"})) == "failure");
  CHECK(reason(exec::events::error("CommandExecError", "-1", {"timeout after 300 ms (signal: killed)"})) ==
        "timeout");
  CHECK(reason(exec::events::error("CommandExecError", "137", {"memory"}, {{"killed", {{"limit", "memory"}}}})) ==
        "killed");
  CHECK(reason(exec::events::error("KeyboardInterrupt", "", {})) == "interrupted");
  CHECK(reason(exec::events::error("DeadKernelError", "the kernel died", {})) == "kernel_died");
  // An invocation's result carries its own status (counted as failures before).
  CHECK(reason(exec::events::custom("invoke_result", {{"status", "success"}})) == "success");
  CHECK(reason(exec::events::custom("invoke_result", {{"status", "failed"}})) == "failure");

  auto registry = std::make_shared<metrics::Registry>();
  M m(registry);
  m.finished("command", outcome(exec::events::execution_complete(1)), std::chrono::milliseconds(20));
  m.finished("code", outcome(exec::events::error("NameError", "x", {})), std::chrono::seconds(2));
  const std::string text = registry->render();
  CHECK(text.find("execd_executions_total{kind=\"command\",outcome=\"success\"} 1\n") != std::string::npos);
  CHECK(text.find("execd_executions_total{kind=\"cell\",outcome=\"failure\"} 1\n") != std::string::npos);
  CHECK(text.find("execd_execution_duration_seconds_bucket{kind=\"command\",le=\"0.025\"} 1\n") != std::string::npos);
  CHECK(text.find("execd_execution_duration_seconds_bucket{kind=\"cell\",le=\"1\"} 0\n") != std::string::npos);
}
