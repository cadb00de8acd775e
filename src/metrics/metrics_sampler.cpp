#include "metrics/metrics_sampler.hpp"

#include <spdlog/spdlog.h>

namespace execd::metrics {
namespace {

// The first reading compares two snapshots this far apart, so /metrics has a value
// almost at once after start.
constexpr std::chrono::milliseconds kFirstInterval{100};

}  // namespace

nlohmann::json to_json(const HostMetrics& m) {
  return {{"cpu_count", m.cpu_count},
          {"cpu_used_pct", m.cpu_used_pct},
          {"mem_total_mib", m.mem_total_mib},
          {"mem_used_mib", m.mem_used_mib},
          {"timestamp", m.timestamp}};
}

MetricsSampler::MetricsSampler(std::chrono::milliseconds interval, HostReader reader)
    : interval_(interval), reader_(std::move(reader)), thread_([this] { run(); }) {}

MetricsSampler::~MetricsSampler() { stop(); }

void MetricsSampler::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void MetricsSampler::run() {
  try {
    CpuCounters before = reader_.read_cpu();
    std::unique_lock<std::mutex> lock(mu_);
    auto wait = kFirstInterval;
    for (;;) {
      if (cv_.wait_for(lock, wait, [&] { return stop_; })) return;
      wait = interval_;
      lock.unlock();
      const CpuCounters after = reader_.read_cpu();
      const HostMetrics m = reader_.compute(before, after);
      before = after;
      exec::Event e{0, "metrics", exec::dump_json(to_json(m))};
      lock.lock();
      latest_ = m;
      e.seq = ++seq_;
      latest_event_ = std::move(e);
      cv_.notify_all();
    }
  } catch (const std::exception& e) {
    spdlog::error("metrics: sampler stopped: {}", e.what());
  }
}

HostMetrics MetricsSampler::latest() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, interval_ + kFirstInterval, [&] { return latest_.has_value() || stop_; });
  return latest_.value_or(HostMetrics{});
}

exec::ReadResult MetricsSampler::read(exec::Cursor& cursor, size_t /*max_events*/, std::chrono::milliseconds wait) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, wait, [&] { return seq_ > cursor.after || stop_; });
  exec::ReadResult out;
  if (seq_ > cursor.after) {
    out.events.push_back(latest_event_);
    cursor.after = seq_;
  }
  out.end = stop_;
  return out;
}

}  // namespace execd::metrics
