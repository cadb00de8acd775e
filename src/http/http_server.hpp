#pragma once

#include <atomic>
#include <cstdint>
#include <chrono>
#include <mutex>
#include <functional>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include <httplib.h>

#include "core/result.hpp"
#include "http/buffered_server.hpp"
#include "http/sse_writer.hpp"

namespace execd::http {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 44772;
  std::string access_token;  ///< empty: no auth
  std::string auth_header = "X-EXECD-ACCESS-TOKEN";  ///< where clients put it (the gateway: OPEN-SANDBOX-API-KEY)
  size_t max_threads = 4096;
  std::chrono::seconds read_timeout{30};
  std::chrono::milliseconds sse_keepalive{3000};
  uint64_t max_request_bytes = 4ull << 20;  ///< bodies of route(): larger is 413, unread
  size_t max_header_count = 100;            ///< more is 431
  size_t max_header_bytes = 64 * 1024;      ///< request line + headers; more is 431
};

/// The HTTP transport: cpp-httplib wired the way every route needs it. It owns the
/// listener, the elastic thread pool, TCP_NODELAY on every connection, the access-token
/// check (constant time, on every route), JSON bodies for 404/405/500, and the stopping
/// flag that open SSE streams watch. Routes are added by api/ before bind(); run() blocks
/// the calling thread; stop() may be called from any thread.
class HttpServer {
 public:
  using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;
  using ReaderHandler =
      std::function<void(const httplib::Request&, httplib::Response&, const httplib::ContentReader&)>;
  enum class Method { get, post, put, patch, del, options };

  explicit HttpServer(ServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  /// `pattern` is a regex over the path (httplib's routing). GET routes also answer HEAD.
  /// For methods with a body, the handler finds it in `req.body`, whatever the
  /// Content-Type says (never form-parsed): read before the handler runs, at most
  /// max_request_bytes (a larger Content-Length is 413 before a byte is read; a chunked
  /// body is cut off at the cap with 413), all of it within the read timeout.
  void route(Method method, const std::string& pattern, Handler handler);
  /// A route that reads its body as a stream (uploads) instead of buffering it; no size
  /// cap here. A body the handler leaves unread closes the connection after the answer.
  void route_streaming(Method method, const std::string& pattern, ReaderHandler handler);

  /// GET and HEAD requests whose path matches `pattern` are served without the access
  /// token (pages that hold no secret, such as the browser console's files).
  void allow_without_token(const std::string& pattern);

  /// Binds the listener; returns the bound port (useful with port 0).
  core::Result<int> bind();
  /// Serves until stop(). Returns once every connection thread has finished.
  void run();
  /// Stops accepting, tells open streams to end, and makes run() return.
  void stop();

  /// SSE settings for streams served by this server (keepalive, stopping flag).
  [[nodiscard]] SseOptions sse_options(bool ends_at_terminal = true) const;
  [[nodiscard]] bool is_stopping() const { return stopping_.load(); }
  /// The flag open streams watch (set by stop()).
  [[nodiscard]] const std::atomic<bool>& stopping_flag() const { return stopping_; }
  /// Counters every SSE stream of this server feeds (bytes written, streams open).
  [[nodiscard]] const SseCounters& sse_counters() const { return sse_counters_; }

  /// The X-Request-ID of the request the calling thread serves: the client's when it sent
  /// a usable one, else a fresh one (accept_request_id). Every response carries it and the
  /// access log (debug level) names it; the reverse proxy passes it upstream. Empty off a
  /// server thread.
  static const std::string& current_request_id();

 private:
  bool is_authorized(const httplib::Request& req) const;
  /// Reads the body of a route() request into req.body under the cap; false when it
  /// wrote an error instead.
  bool read_body(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) const;
  bool path_matches_other_method(const std::string& path, Method except, std::string& allow) const;

  ServerOptions options_;
  std::unique_ptr<BufferedServer> server_;
  std::atomic<bool> stopping_{false};
  mutable SseCounters sse_counters_;  // streams add to it through their SseOptions
  int listen_fd_ = -1;
  std::mutex run_mu_;     // orders stop() against run()'s start and end
  bool running_ = false;  // run() is in (or entering) httplib's accept loop
  struct RouteEntry {
    Method method;
    std::regex pattern;
    bool is_streaming = false;
  };
  std::vector<RouteEntry> routes_;
  std::vector<std::regex> public_paths_;  // allow_without_token()
};

}  // namespace execd::http
