#pragma once

#include <httplib.h>

namespace execd::http {

/// httplib's server with its per-connection loop replaced: each accepted connection is
/// served through one ConnectionStream (buffered reads, no poll before every system
/// call) for all its keep-alive requests. Parsing, routing and responses stay httplib's
/// (process_request); the limits are the ones set on the server (read/write/keep-alive
/// timeouts, keep-alive count). An idle kept-alive connection notices stop() within
/// 100 ms.
class BufferedServer final : public httplib::Server {
 private:
  // httplib declares this private virtual; overriding it is what SSLServer does too.
  bool process_and_close_socket(socket_t sock) override;
};

}  // namespace execd::http
