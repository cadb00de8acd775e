#pragma once

#include <httplib.h>

#include "core/unique_fd.hpp"

namespace execd::http {

/// httplib's server with its per-connection loop replaced: each accepted connection is
/// served through one ConnectionStream (buffered reads, no poll before every system
/// call) for all its keep-alive requests. Parsing, routing and responses stay httplib's
/// (process_request); the limits are the ones set on the server (read/write/keep-alive
/// timeouts, keep-alive count).
class BufferedServer final : public httplib::Server {
 public:
  BufferedServer();
  /// Ends every kept-alive connection waiting for its next request; call after stop()
  /// (httplib's stop() is not virtual and only closes the listener).
  void end_idle_connections();

 private:
  // httplib declares this private virtual; overriding it is what SSLServer does too.
  bool process_and_close_socket(socket_t sock) override;

  core::UniqueFd stop_fd_;  // an eventfd, readable once end_idle_connections() ran
};

}  // namespace execd::http
