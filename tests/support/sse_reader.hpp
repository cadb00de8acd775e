#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

namespace execd::test {

/// One parsed SSE event: its `id:` and `data:` lines; `json` is data parsed (null if not JSON).
struct SseEvent {
  std::string id;
  std::string data;
  nlohmann::json json;
  [[nodiscard]] std::string type() const { return json.is_object() ? json.value("type", "") : ""; }
};

/// What a streaming request produced.
struct SseResponse {
  int status = 0;
  httplib::Headers headers;
  std::string raw;              ///< every byte of the body as received
  std::vector<SseEvent> events;
  int comments = 0;             ///< keepalive comment lines seen
  bool ended = false;           ///< the server closed the body (not cut by us or a timeout)
  std::string error;            ///< transport error text, if any

  /// Events whose "type" is `type`.
  [[nodiscard]] std::vector<SseEvent> of_type(const std::string& type) const;
};

/// Incremental SSE parser: feed bytes, get whole events.
class SseParser {
 public:
  /// Returns the events completed by `chunk`; counts comment lines into `comments`.
  std::vector<SseEvent> feed(const std::string& chunk, int& comments);

 private:
  std::string buf_;
};

struct SseRequest {
  std::string method = "GET";
  std::string path;
  std::string body;                  ///< sent as application/json when not empty
  httplib::Headers headers;
  std::chrono::seconds timeout{30};  ///< read timeout between bytes
  /// Called per event; return false to disconnect early.
  std::function<bool(const SseEvent&)> on_event;
};

/// Sends one request to 127.0.0.1:port and reads the streamed body event by event.
SseResponse sse_request(int port, const SseRequest& req);

}  // namespace execd::test
