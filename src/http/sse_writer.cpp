#include "http/sse_writer.hpp"

#include <charconv>

namespace execd::http {
namespace {

// A blocked stream wakes at least this often to notice shutdown.
constexpr std::chrono::milliseconds kMaxWaitSlice{1000};

}  // namespace

std::string format_sse_event(const exec::Event& event) {
  std::string out;
  out.reserve(event.json.size() + 32);
  out += "id: ";
  out += std::to_string(event.seq);
  out += "\ndata: ";
  out += event.json;
  out += "\n\n";
  return out;
}

core::Result<uint64_t> resume_after(const httplib::Request& req) {
  const char* what = "header Last-Event-ID";
  std::string text = req.get_header_value("Last-Event-ID");
  if (text.empty()) {
    if (!req.has_param("after")) return uint64_t{0};
    text = req.get_param_value("after");
    what = "query parameter 'after'";
  }
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || p != text.data() + text.size()) {
    return core::make_error(core::Errc::invalid_argument,
                            std::string(what) + " must be an event seq (a whole number), got '" + text.substr(0, 40) + "'");
  }
  return v;
}

void stream_events(httplib::Response& res, std::shared_ptr<exec::EventSource> source, exec::Cursor start,
                   SseOptions options) {
  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  auto cursor = std::make_shared<exec::Cursor>(start);
  // Counted open from here until httplib releases the provider (the stream ended, or the
  // response was never written).
  SseCounters* counters = options.counters;
  if (counters != nullptr) counters->open.fetch_add(1, std::memory_order_relaxed);
  auto count = [counters](size_t n) {
    if (counters != nullptr) counters->bytes.fetch_add(n, std::memory_order_relaxed);
  };
  res.set_chunked_content_provider(
      "text/event-stream",
      [source = std::move(source), cursor, options, count](size_t /*offset*/, httplib::DataSink& sink) {
        auto silent_since = std::chrono::steady_clock::now();
        for (;;) {
          if (options.stopping != nullptr && options.stopping->load()) {
            sink.done();
            return true;
          }
          const auto idle = std::chrono::steady_clock::now() - silent_since;
          const auto until_keepalive = std::chrono::duration_cast<std::chrono::milliseconds>(options.keepalive - idle);
          if (until_keepalive.count() <= 0) {
            if (!sink.write(kSseKeepalive, std::char_traits<char>::length(kSseKeepalive))) return false;
            count(std::char_traits<char>::length(kSseKeepalive));
            silent_since = std::chrono::steady_clock::now();
            continue;
          }
          exec::ReadResult batch = source->read(*cursor, 256, std::min(until_keepalive, kMaxWaitSlice));
          if (!batch.events.empty()) {
            std::string out;
            for (const auto& e : batch.events) out += format_sse_event(e);
            // Return after each batch: httplib flushes it and calls us again.
            if (!sink.write(out.data(), out.size())) return false;
            count(out.size());
            if (batch.end && options.ends_at_terminal) sink.done();
            return true;
          }
          if (batch.end && options.ends_at_terminal) {
            sink.done();
            return true;
          }
        }
      },
      [counters](bool /*success*/) {
        if (counters != nullptr) counters->open.fetch_sub(1, std::memory_order_relaxed);
      });
}

}  // namespace execd::http
