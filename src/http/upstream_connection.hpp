#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/result.hpp"
#include "core/unique_fd.hpp"
#include "http/client.hpp"
#include "http/tls_client.hpp"

namespace execd::http {

/// A response's status line and headers.
struct ResponseHead {
  int status = 0;
  std::string reason;
  ClientHeaders headers;
  /// First header named `name` (case-insensitive); empty when absent.
  [[nodiscard]] std::string header(std::string_view name) const;
};

/// How a response body is delimited (RFC 9112 6.3).
enum class BodyFraming { none, length, chunked, until_close };

/// One HTTP/1.1 client connection to an upstream (TCP or unix socket), read through a
/// fixed 64 KiB buffer: the streaming half of the HTTP client. send_request() runs one
/// whole exchange on it; the reverse proxy sends a request head, streams the body, reads
/// the response head and then pulls the body a piece at a time, as fast as its own client
/// takes it (so memory stays bounded whatever the body's size).
///
/// With `endpoint.tls` set, open() runs the TLS handshake and every byte goes through
/// it (fd() then carries ciphertext: the WebSocket relay only uses plain upstreams).
/// One thread uses a connection at a time. Every call takes a deadline; a call that cannot
/// finish by it fails with `unavailable` (the message names the endpoint and says it timed
/// out). Errors name the endpoint and what failed.
class UpstreamConnection {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr size_t kBufferSize = 64 * 1024;
  static constexpr size_t kMaxLineBytes = 64 * 1024;

  /// Connects (non-blocking, TCP_NODELAY on TCP) within the deadline.
  static core::Result<UpstreamConnection> open(const ClientEndpoint& endpoint, Clock::time_point deadline);

  UpstreamConnection(UpstreamConnection&&) = default;
  UpstreamConnection& operator=(UpstreamConnection&&) = default;

  /// Sends all of `bytes`.
  core::Result<void> send(std::string_view bytes, Clock::time_point deadline);
  /// Reads the response's status line and headers. Interim 1xx answers are skipped,
  /// except 101 (Switching Protocols), which is returned. Sets the body framing for
  /// `request_method` (HEAD, 204 and 304 have none).
  core::Result<ResponseHead> read_head(std::string_view request_method, Clock::time_point deadline);
  /// The framing read_head() found, and for `length` the bytes still to come.
  [[nodiscard]] BodyFraming framing() const { return framing_; }
  [[nodiscard]] uint64_t remaining() const { return remaining_; }

  /// Up to `size` bytes of the body (chunk framing removed): 0 once the body has ended
  /// cleanly, an error when it was cut (peer closed early, a malformed chunk) or the
  /// deadline passed.
  core::Result<size_t> read_body(char* out, size_t size, Clock::time_point deadline);

  /// Bytes received past the response head and not yet handed out (after a 101, the
  /// first bytes of the new protocol); empties the buffer.
  std::string take_buffered();
  [[nodiscard]] int fd() const { return fd_.get(); }
  [[nodiscard]] const ClientEndpoint& endpoint() const { return endpoint_; }
  /// "host:port" or "unix:/path", for messages (and as a key).
  [[nodiscard]] std::string where() const;
  static std::string where_of(const ClientEndpoint& endpoint);
  /// An `unavailable` error naming the endpoint.
  [[nodiscard]] core::Error fail(const std::string& what) const;

 private:
  UpstreamConnection(ClientEndpoint endpoint, core::UniqueFd fd, std::unique_ptr<TlsSession> tls);
  /// Receives more into the buffer; false on end of stream (eof_), error or deadline.
  bool fill(Clock::time_point deadline);
  /// A CRLF-terminated line (without it), at most `max` bytes.
  core::Result<std::string> line(size_t max, Clock::time_point deadline, const char* what);
  size_t buffered() const { return end_ - begin_; }
  core::Error broken(const char* what) const;

  ClientEndpoint endpoint_;
  core::UniqueFd fd_;
  std::unique_ptr<TlsSession> tls_;  // declared after fd_: destroyed before the socket closes
  std::string tls_error_;
  std::unique_ptr<char[]> buffer_;
  size_t begin_ = 0;
  size_t end_ = 0;
  bool eof_ = false;
  bool timed_out_ = false;
  int error_ = 0;
  BodyFraming framing_ = BodyFraming::none;
  uint64_t remaining_ = 0;  // length: bytes left; chunked: bytes left in this chunk
  bool chunks_done_ = false;
};

/// Waits for `events` on `fd` until the deadline: true when ready (EINTR retried).
bool wait_for_fd(int fd, short events, std::chrono::steady_clock::time_point deadline);

/// ASCII case-insensitive equality (header names and tokens).
bool iequals(std::string_view a, std::string_view b);

}  // namespace execd::http
