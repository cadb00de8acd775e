#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"
#include "http/client.hpp"

namespace execd::http {

class HttpServer;

/// Where one proxied request goes: the upstream, and headers to add to the request
/// (a sandbox's X-EXECD-ACCESS-TOKEN; a client header of the same name is replaced).
struct ProxyTarget {
  ClientEndpoint endpoint;
  ClientHeaders headers;
};

/// What a proxy has done so far, for metrics. Relaxed atomics.
struct ProxyStats {
  std::atomic<uint64_t> requests{0};             ///< requests forwarded (WebSocket upgrades included)
  std::atomic<uint64_t> upstream_failures{0};    ///< 502s and streams cut by the upstream
  std::atomic<uint64_t> bytes_to_upstream{0};    ///< request bodies and WebSocket bytes sent
  std::atomic<uint64_t> bytes_from_upstream{0};  ///< response bodies and WebSocket bytes received
  std::atomic<int64_t> websockets_open{0};
};

struct ProxyOptions {
  std::chrono::milliseconds connect_timeout{5000};
  /// The longest either side may stay silent once an exchange started (a response head,
  /// each piece of a body, a WebSocket with no traffic).
  std::chrono::milliseconds idle_timeout{std::chrono::minutes(10)};
  /// Client headers never forwarded: the client's own credentials for this server.
  std::vector<std::string> withheld_headers;
  /// When set (the server stopping), WebSocket relays end within a second.
  const std::atomic<bool>* stopping = nullptr;
  /// Upstream connections kept alive after a whole response, per upstream, for the next
  /// GET/HEAD/OPTIONS (0: a fresh connection per request), and for how long (below the
  /// upstream's own keep-alive timeout: execd's is 5 s).
  size_t max_idle_per_upstream = 8;
  std::chrono::milliseconds idle_keep{2000};
};

/// A streaming HTTP/1.1 reverse proxy, run inside an HttpServer handler on the request's
/// own thread. Each request gets a fresh upstream connection (UpstreamConnection):
///  - the request body is streamed to the upstream as the client sends it (chunked when
///    the client's was, or when httplib decoded a Content-Encoding on the way in);
///  - the response is streamed back as it arrives, one 64 KiB buffer at a time and only
///    as fast as the client takes it (bounded memory, backpressure both ways); each
///    upstream chunk goes out at once (SSE events are not held back). Content-Length or
///    chunked framing as the upstream sent it;
///  - hop-by-hop headers (Connection and those it names, Keep-Alive, Proxy-*, TE, Trailer,
///    Transfer-Encoding, Upgrade) are dropped both ways; X-Forwarded-For/-Proto/-Host and
///    the request's X-Request-ID are added; withheld headers are not forwarded;
///  - an upstream that cannot be reached, or breaks off before its response head, is a 502
///    `BAD_GATEWAY` naming it; one that dies mid-body cuts the client's response (no
///    clean end: the connection closes short of the length or the last chunk), logged;
///  - upstream connections are kept alive and reused, but only for GET, HEAD and OPTIONS
///    (no body, idempotent: one that went stale is retried once on a fresh connection);
///  - `Upgrade: websocket` is forwarded; on the upstream's 101 the client's connection is
///    taken over (BufferedServer::take_over_connection), the 101 relayed, and bytes copied
///    both ways with poll() until either side closes.
class ReverseProxy {
 public:
  explicit ReverseProxy(ProxyOptions options);

  /// Forwards `req` to `target` as `upstream_target` (path and query, as sent: not
  /// re-encoded) and fills `res` with the upstream's answer. `body` reads the request's
  /// body (null when the route has none: GET, HEAD, OPTIONS).
  void forward(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader* body,
               const ProxyTarget& target, const std::string& upstream_target) const;

  [[nodiscard]] const ProxyStats& stats() const { return *stats_; }

  struct Pool;  ///< idle upstream connections (defined in the .cpp)

 private:
  ProxyOptions options_;
  std::shared_ptr<ProxyStats> stats_;  // shared with response providers that outlive a call
  std::shared_ptr<Pool> pool_;         // idle upstream connections, shared the same way
};

/// Where a request to a proxy route goes, as its route decides.
struct ProxyCall {
  ProxyTarget target;
  std::string upstream_target;  ///< path and query for the upstream, starting with '/'
};
using ProxyResolver = std::function<core::Result<ProxyCall>(const httplib::Request&)>;

/// Registers `pattern` for every method (GET and HEAD, OPTIONS, POST, PUT, PATCH, DELETE)
/// on `server`: each request is resolved, then forwarded by `proxy`; a resolver error is
/// written as the JSON error it maps to (a request body is left unread: the connection
/// closes after the answer).
void add_proxy_routes(HttpServer& server, const std::string& pattern, std::shared_ptr<const ReverseProxy> proxy,
                      ProxyResolver resolve);

/// The rest of a raw request target (req.target, path and query as sent) after `prefix`
/// (e.g. "/v1/sandboxes/abc/proxy/8000"): the upstream's path and query, starting with
/// '/'. nullopt when the target does not start with `prefix` followed by '/', '?' or its
/// end (a percent-encoded prefix, say).
std::optional<std::string> target_after(std::string_view raw_target, std::string_view prefix);

}  // namespace execd::http
