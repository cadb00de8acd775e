#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <httplib.h>

#include "core/result.hpp"
#include "exec/event_source.hpp"

namespace execd::http {

/// How every streaming endpoint frames events: `id: <seq>\ndata: <json>\n\n`, one write
/// per batch of ready events, a `: keepalive` comment after `keepalive` of silence
/// (clients read with ~10 s socket timeouts), and a clean end of the chunked body right
/// after the terminal event. Standard SSE, which the contract's clients accept beside raw
/// JSON lines (compat-notes §2).
/// What a server's SSE streams add up to, for its metrics: bytes written (events and
/// keepalives, without chunk framing) and streams open now. Relaxed atomics.
struct SseCounters {
  std::atomic<uint64_t> bytes{0};
  std::atomic<int64_t> open{0};
};

struct SseOptions {
  std::chrono::milliseconds keepalive{3000};
  /// Set by the server at shutdown: streams end at their next wake-up.
  const std::atomic<bool>* stopping = nullptr;
  /// Open-ended feeds (metrics) never close by themselves; false makes that explicit.
  bool ends_at_terminal = true;
  /// Fed by the stream when set (the server's).
  SseCounters* counters = nullptr;
};

/// Pure framing, separate from the socket so it can be tested against a string.
std::string format_sse_event(const exec::Event& event);
inline constexpr const char* kSseKeepalive = ": keepalive\n\n";

/// Parses `Last-Event-ID` (or query `after`) into the seq to resume after: 0 when both are
/// absent; invalid_argument naming the header or parameter when it is not a decimal seq.
core::Result<uint64_t> resume_after(const httplib::Request& req);

/// Makes `res` an SSE stream of `source` from `start`. The stream is served by the HTTP
/// thread that handles the request; a client that goes away is noticed at the next write
/// (an event or a keepalive) and the stream detaches, leaving the source untouched.
void stream_events(httplib::Response& res, std::shared_ptr<exec::EventSource> source, exec::Cursor start,
                   SseOptions options);

}  // namespace execd::http
