#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace execd::metrics {

/// Label pairs of one series, in the order they are rendered.
using Labels = std::vector<std::pair<std::string, std::string>>;

/// A monotonically increasing value. Lock-free.
class Counter {
 public:
  void inc(double by = 1) { value_.fetch_add(by, std::memory_order_relaxed); }
  [[nodiscard]] double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

/// A value that goes up and down. Lock-free.
class Gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void add(double by) { value_.fetch_add(by, std::memory_order_relaxed); }
  [[nodiscard]] double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

/// Observations counted into fixed buckets (upper bounds, ascending), plus their sum and
/// count. Lock-free: one bucket and two totals are bumped per observation.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  [[nodiscard]] const std::vector<double>& bounds() const { return bounds_; }
  /// Observations <= bounds()[i] (cumulative, as rendered); i == bounds().size(): all.
  [[nodiscard]] uint64_t cumulative(size_t i) const;
  [[nodiscard]] uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  [[nodiscard]] double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // per bucket, not cumulative; last: +Inf
  std::atomic<uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

/// A histogram counted elsewhere, as rendered: `cumulative[i]` observations <= bounds[i],
/// and one more entry (all observations) for +Inf.
struct HistogramValues {
  std::vector<double> bounds;
  std::vector<uint64_t> cumulative;
  double sum = 0;
};

/// Metrics by name and labels, rendered in the Prometheus text exposition format 0.0.4
/// (`# HELP`, `# TYPE`, one line per series; histograms as `_bucket{le=...}`, `_sum`,
/// `_count`). Families render in the order they were first asked for.
///
/// Thread-safe. Looking a series up takes a mutex; the returned reference stays valid
/// for the registry's life, so hot paths look up once and then only touch atomics.
/// Values another module owns are read at render time through callbacks.
class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  /// The series `name{labels}`, created on first use. `help` is taken from the first call.
  /// A name already used for another type gets a series that is never rendered (and an
  /// error logged): a programming error must not take the metrics down.
  Counter& counter(const std::string& name, const std::string& help, const Labels& labels = {});
  Gauge& gauge(const std::string& name, const std::string& help, const Labels& labels = {});
  /// `bounds` are taken from the family's first call.
  Histogram& histogram(const std::string& name, const std::string& help, const std::vector<double>& bounds,
                       const Labels& labels = {});
  /// A series whose value is `read()` at each render (called with no lock of ours held
  /// other than the registry's; it must not call back into the registry).
  void counter_callback(const std::string& name, const std::string& help, const Labels& labels,
                        std::function<double()> read);
  void gauge_callback(const std::string& name, const std::string& help, const Labels& labels,
                      std::function<double()> read);
  void histogram_callback(const std::string& name, const std::string& help, const Labels& labels,
                          std::function<HistogramValues()> read);

  /// Every family, text format 0.0.4.
  [[nodiscard]] std::string render() const;

  /// The Content-Type of render()'s output.
  static constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

 private:
  struct Family;
  Family& family(const std::string& name, const std::string& help, int type, bool& mismatch);

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Family>> families_;
  std::vector<std::unique_ptr<Counter>> orphan_counters_;
  std::vector<std::unique_ptr<Gauge>> orphan_gauges_;
  std::vector<std::unique_ptr<Histogram>> orphan_histograms_;
};

/// A label value or HELP text escaped for the text format (backslash, newline and, for
/// label values, the double quote).
std::string escape_label_value(const std::string& v);
/// A sample value as the text format writes it: shortest round-trip decimal, "+Inf",
/// "-Inf", "NaN".
std::string format_value(double v);

}  // namespace execd::metrics
