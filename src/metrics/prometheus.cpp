#include "metrics/prometheus.hpp"

#include <spdlog/spdlog.h>

#include <charconv>
#include <cmath>

namespace execd::metrics {
namespace {

enum Type { kCounter, kGauge, kHistogram };

const char* type_name(int t) {
  switch (t) {
    case kCounter:
      return "counter";
    case kGauge:
      return "gauge";
    default:
      return "histogram";
  }
}

std::string escape_help(const std::string& v) {
  std::string out;
  for (const char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

// `{a="1",b="2"}`, with `extra` (a histogram's le) last; empty when there are no labels.
std::string label_text(const Labels& labels, const std::pair<std::string, std::string>* extra = nullptr) {
  if (labels.empty() && extra == nullptr) return {};
  std::string out = "{";
  bool first = true;
  auto add = [&](const std::pair<std::string, std::string>& l) {
    if (!first) out += ',';
    first = false;
    out += l.first + "=\"" + escape_label_value(l.second) + "\"";
  };
  for (const auto& l : labels) add(l);
  if (extra != nullptr) add(*extra);
  return out + "}";
}

}  // namespace

std::string escape_label_value(const std::string& v) {
  std::string out;
  for (const char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else if (c == '"')
      out += "\\\"";
    else
      out += c;
  }
  return out;
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, end) : std::string("NaN");
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0, std::memory_order_relaxed);
}

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

uint64_t Histogram::cumulative(size_t i) const {
  uint64_t total = 0;
  for (size_t k = 0; k <= i && k <= bounds_.size(); ++k) total += buckets_[k].load(std::memory_order_relaxed);
  return total;
}

struct Registry::Family {
  std::string name;
  std::string help;
  int type = kCounter;
  std::vector<double> bounds;
  struct Series {
    Labels labels;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
    std::function<double()> read;
    std::function<HistogramValues()> read_histogram;
  };
  std::vector<Series> series;

  Series* find(const Labels& labels) {
    for (auto& s : series) {
      if (s.labels == labels) return &s;
    }
    return nullptr;
  }
};

Registry::Registry() = default;
Registry::~Registry() = default;

Registry::Family& Registry::family(const std::string& name, const std::string& help, int type, bool& mismatch) {
  mismatch = false;
  for (auto& f : families_) {
    if (f->name == name) {
      if (f->type != type) {
        spdlog::error("metrics: {} is a {}, not a {}; this series is not exported", name, type_name(f->type),
                      type_name(type));
        mismatch = true;
      }
      return *f;
    }
  }
  families_.push_back(std::make_unique<Family>(Family{name, help, type, {}, {}}));
  return *families_.back();
}

Counter& Registry::counter(const std::string& name, const std::string& help, const Labels& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  bool mismatch = false;
  Family& f = family(name, help, kCounter, mismatch);
  if (mismatch) return *orphan_counters_.emplace_back(std::make_unique<Counter>());
  if (auto* s = f.find(labels); s != nullptr && s->counter) return *s->counter;
  f.series.push_back(Family::Series{labels, std::make_unique<Counter>(), nullptr, nullptr, nullptr, nullptr});
  return *f.series.back().counter;
}

Gauge& Registry::gauge(const std::string& name, const std::string& help, const Labels& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  bool mismatch = false;
  Family& f = family(name, help, kGauge, mismatch);
  if (mismatch) return *orphan_gauges_.emplace_back(std::make_unique<Gauge>());
  if (auto* s = f.find(labels); s != nullptr && s->gauge) return *s->gauge;
  f.series.push_back(Family::Series{labels, nullptr, std::make_unique<Gauge>(), nullptr, nullptr, nullptr});
  return *f.series.back().gauge;
}

Histogram& Registry::histogram(const std::string& name, const std::string& help, const std::vector<double>& bounds,
                               const Labels& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  bool mismatch = false;
  Family& f = family(name, help, kHistogram, mismatch);
  if (mismatch) return *orphan_histograms_.emplace_back(std::make_unique<Histogram>(bounds));
  if (f.series.empty()) f.bounds = bounds;
  if (auto* s = f.find(labels); s != nullptr && s->histogram) return *s->histogram;
  f.series.push_back(Family::Series{labels, nullptr, nullptr, std::make_unique<Histogram>(f.bounds), nullptr, nullptr});
  return *f.series.back().histogram;
}

void Registry::counter_callback(const std::string& name, const std::string& help, const Labels& labels,
                                std::function<double()> read) {
  std::lock_guard<std::mutex> lock(mu_);
  bool mismatch = false;
  Family& f = family(name, help, kCounter, mismatch);
  if (!mismatch) f.series.push_back(Family::Series{labels, nullptr, nullptr, nullptr, std::move(read), nullptr});
}

void Registry::gauge_callback(const std::string& name, const std::string& help, const Labels& labels,
                              std::function<double()> read) {
  std::lock_guard<std::mutex> lock(mu_);
  bool mismatch = false;
  Family& f = family(name, help, kGauge, mismatch);
  if (!mismatch) f.series.push_back(Family::Series{labels, nullptr, nullptr, nullptr, std::move(read), nullptr});
}

void Registry::histogram_callback(const std::string& name, const std::string& help, const Labels& labels,
                                  std::function<HistogramValues()> read) {
  std::lock_guard<std::mutex> lock(mu_);
  bool mismatch = false;
  Family& f = family(name, help, kHistogram, mismatch);
  if (!mismatch) f.series.push_back(Family::Series{labels, nullptr, nullptr, nullptr, nullptr, std::move(read)});
}

std::string Registry::render() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  for (const auto& f : families_) {
    out += "# HELP " + f->name + " " + escape_help(f->help) + "\n";
    out += "# TYPE " + f->name + " " + type_name(f->type) + "\n";
    for (const auto& s : f->series) {
      if (s.histogram || s.read_histogram) {
        HistogramValues h;
        if (s.read_histogram) {
          h = s.read_histogram();
        } else {
          h.bounds = s.histogram->bounds();
          for (size_t i = 0; i <= h.bounds.size(); ++i) h.cumulative.push_back(s.histogram->cumulative(i));
          h.sum = s.histogram->sum();
        }
        h.cumulative.resize(h.bounds.size() + 1, h.cumulative.empty() ? 0 : h.cumulative.back());
        for (size_t i = 0; i <= h.bounds.size(); ++i) {
          const std::pair<std::string, std::string> le{
              "le", i < h.bounds.size() ? format_value(h.bounds[i]) : std::string("+Inf")};
          out += f->name + "_bucket" + label_text(s.labels, &le) + " " +
                 format_value(static_cast<double>(h.cumulative[i])) + "\n";
        }
        out += f->name + "_sum" + label_text(s.labels) + " " + format_value(h.sum) + "\n";
        out += f->name + "_count" + label_text(s.labels) + " " +
               format_value(static_cast<double>(h.cumulative.back())) + "\n";
        continue;
      }
      const double v = s.read ? s.read() : s.counter ? s.counter->value() : s.gauge->value();
      out += f->name + label_text(s.labels) + " " + format_value(v) + "\n";
    }
  }
  return out;
}

}  // namespace execd::metrics
