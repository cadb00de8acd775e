#pragma once

#include <chrono>

#include <httplib.h>

#include "core/unique_fd.hpp"
#include "http/request_head.hpp"

namespace execd::http {

/// httplib's server with its per-connection loop replaced: each accepted connection is
/// served through one ConnectionStream (buffered reads, no poll before every system
/// call) for all its keep-alive requests. Parsing, routing and responses stay httplib's
/// (process_request); the limits are the ones set on the server (read/write/keep-alive
/// timeouts, keep-alive count) plus the head limits.
///
/// Before httplib sees a request, its head is checked (check_request_head) in the
/// stream's buffer: a head over the limits or with ambiguous framing is answered here
/// with a JSON error and `Connection: close`, and the connection is closed. A connection
/// also closes after a response whose request body was not read to its end (an early
/// error, a body httplib does not read), so no body is ever read as the next request.
class BufferedServer final : public httplib::Server {
 public:
  BufferedServer();
  /// Set before listening.
  void set_head_limits(const HeadLimits& limits) { head_limits_ = limits; }
  /// Ends every kept-alive connection waiting for its next request; call after stop()
  /// (httplib's stop() is not virtual and only closes the listener).
  void end_idle_connections();

  /// For handlers, on the thread serving the request (no-ops, or nullptr, elsewhere).
  /// The checked head of the request being served (its `method` is left empty: use req).
  static const HeadInfo* current_head();
  /// Closes the connection once the response is written (sets `Connection: close` on
  /// `res`): for a request whose body will not be read to its end.
  static void close_after_response(httplib::Response& res);
  /// The rest of the current request's body must arrive within `within`.
  static void bound_body(std::chrono::milliseconds within);
  /// Takes the current connection over (a protocol upgrade): its socket is the caller's
  /// to read and write until the handler returns, `buffered` receives the bytes already
  /// read past the request head, what httplib writes afterwards is dropped, and the
  /// connection is closed once the handler returns. -1 off a server thread.
  static int take_over_connection(std::string& buffered);
  /// When the current request started (its first byte was awaited), for access logs.
  static std::chrono::steady_clock::time_point current_start();

 private:
  // httplib declares this private virtual; overriding it is what SSLServer does too.
  bool process_and_close_socket(socket_t sock) override;

  core::UniqueFd stop_fd_;  // an eventfd, readable once end_idle_connections() ran
  HeadLimits head_limits_;
};

}  // namespace execd::http
