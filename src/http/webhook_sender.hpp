#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/result.hpp"

namespace execd::http {

/// Delivers result documents to callback URLs the way webhook senders do: an HTTP POST
/// of the JSON body, signed `X-Execd-Signature: sha256=<hex HMAC-SHA256 of the body>`
/// with the --callback-secret key (no header without a key), retried with exponential
/// backoff (0.5 s doubling to 30 s) on connection errors, 5xx, 408 and 429 until
/// `retry_for` has passed since the first attempt; any other status ends it. At most
/// `max_in_flight` deliveries are attempted at once, each bounded by `timeout`, on the
/// sender's own threads (started by the first delivery): nothing else ever waits for a
/// receiver. Thread-safe.
class WebhookSender {
 public:
  struct Options {
    std::string secret;
    size_t max_in_flight = 8;
    std::chrono::milliseconds timeout{10000};
    std::chrono::milliseconds retry_for{60000};
    std::chrono::milliseconds first_backoff{500};
    std::chrono::milliseconds max_backoff{30000};
  };

  /// The delivery's state, as GET /executions/{id} shows it under "callback":
  /// {"url", "state": "pending" | "delivered" | "failed", "attempts", "status_code"?,
  ///  "last_error"?}.
  using StateSink = std::function<void(const nlohmann::json& state)>;

  explicit WebhookSender(Options options);
  ~WebhookSender();  ///< stops; deliveries not yet done are abandoned (marked failed)
  WebhookSender(const WebhookSender&) = delete;
  WebhookSender& operator=(const WebhookSender&) = delete;

  /// invalid_argument naming `field` unless `url` is an absolute http:// or https:// URL
  /// with a host (and, if given, a port 1..65535).
  static core::Result<void> check_url(std::string_view url, std::string_view field);

  /// Queues one delivery; `sink` hears every state change (first: pending).
  void deliver(std::string url, std::vector<std::pair<std::string, std::string>> headers, std::string body, StateSink sink);

  /// "sha256=<hex>" for `body` under `secret` (what receivers recompute).
  static std::string signature(std::string_view secret, std::string_view body);

 private:
  struct Delivery;
  void run();
  void attempt(Delivery& d);

  Options options_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<Delivery>> waiting_;  // due whenever their next_at comes
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace execd::http
