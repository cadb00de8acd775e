#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "exec/event_source.hpp"
#include "metrics/host_metrics.hpp"

namespace execd::metrics {

/// The one host sampler shared by GET /metrics and every /metrics/watch client: a thread
/// reads /proc (and the cgroup) once per `interval` and publishes the reading. As an
/// EventSource it is a live feed: a reader gets the newest sample after its cursor
/// (slow readers skip to the latest instead of queueing stale ones); it never ends.
class MetricsSampler final : public exec::EventSource {
 public:
  explicit MetricsSampler(std::chrono::milliseconds interval = std::chrono::seconds(1), HostReader reader = HostReader());
  ~MetricsSampler() override;
  MetricsSampler(const MetricsSampler&) = delete;
  MetricsSampler& operator=(const MetricsSampler&) = delete;

  /// The latest reading; the first one is ready about 100 ms after start (waits for it).
  [[nodiscard]] HostMetrics latest();
  exec::ReadResult read(exec::Cursor& cursor, size_t max_events, std::chrono::milliseconds wait) override;
  void stop();

 private:
  void run();

  const std::chrono::milliseconds interval_;
  HostReader reader_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<HostMetrics> latest_;
  exec::Event latest_event_;
  uint64_t seq_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

/// The contract's Metrics JSON object.
nlohmann::json to_json(const HostMetrics& m);

}  // namespace execd::metrics
