#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/result.hpp"
#include "core/unique_fd.hpp"

namespace execd::http {

class TlsContext;  // http/tls_client.hpp

/// Where an upstream server listens: TCP host:port, or a unix socket (Docker's engine).
struct ClientEndpoint {
  std::string host;       ///< TCP: name or address
  int port = 0;
  std::string unix_path;  ///< non-empty: connect here instead of host:port
  /// Set: HTTPS over TCP, the server verified against this context's CAs as
  /// `tls_server_name` (empty: `host`). Unset: plain HTTP.
  std::shared_ptr<const TlsContext> tls = nullptr;
  std::string tls_server_name = {};

  /// "http://host:port", "host:port", "unix:///path/to.sock" (Docker's DOCKER_HOST form).
  static core::Result<ClientEndpoint> parse(std::string_view text);
};

using ClientHeaders = std::vector<std::pair<std::string, std::string>>;

struct ClientResponse {
  int status = 0;
  ClientHeaders headers;
  std::string body;
  /// First header named `name` (case-insensitive); empty when absent.
  [[nodiscard]] std::string header(std::string_view name) const;
};

struct ClientRequest {
  std::string method = "GET";
  std::string target = "/";     ///< path and query, already encoded
  ClientHeaders headers;        ///< Host and Content-Length are added when absent
  std::string body;
  std::chrono::milliseconds timeout{10000};  ///< connect + send + whole answer
  uint64_t max_response_bytes = 64ull << 20;  ///< a larger body is an error, not read
};

/// One HTTP/1.1 exchange on a fresh connection (TCP or unix socket), whole body in
/// memory: for control calls (Docker Engine API, execd /ping, callbacks), not for
/// streaming (the reverse proxy uses ClientConnection). Reads Content-Length, chunked
/// and close-delimited bodies. unavailable for connect/timeout/IO errors, with a message
/// naming the endpoint and what failed; a non-2xx status is a response, not an error.
core::Result<ClientResponse> send_request(const ClientEndpoint& endpoint, const ClientRequest& request);

}  // namespace execd::http
