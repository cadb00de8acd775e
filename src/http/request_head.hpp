#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace execd::http {

/// What one request head may hold. Defaults are the daemon's flags' defaults.
struct HeadLimits {
  size_t max_header_count = 100;      ///< header lines; more is 431
  size_t max_head_bytes = 64 * 1024;  ///< request line + headers + blank line; more is 431
  size_t max_target_bytes = 8192;     ///< the request target (path and query); more is 414
  size_t max_range_bytes = 1024;      ///< a Range header's value; more is 416
};

/// The framing facts of an accepted head, for the connection loop.
struct HeadInfo {
  size_t head_bytes = 0;  ///< up to and including the blank line
  std::string_view method;  ///< a view of the checked bytes
  std::optional<uint64_t> content_length;  ///< set when a Content-Length header was sent
  bool is_chunked = false;                 ///< Transfer-Encoding: chunked
  size_t header_count = 0;
  /// True when bytes follow the head as a body (a non-zero length, or chunked).
  [[nodiscard]] bool has_body() const { return is_chunked || content_length.value_or(0) > 0; }
};

/// The verdict on one head: `info` when acceptable, otherwise the status to answer
/// (400, 414, 416, 431 or 501) and a message naming the problem.
struct HeadCheck {
  std::optional<HeadInfo> info;
  int status = 0;
  std::string message;
  explicit operator bool() const { return info.has_value(); }
};

/// Where the head in `bytes` ends: the offset just past the first "\r\n\r\n", or nullopt
/// when it has not all arrived. Pure; linear in `bytes`.
std::optional<size_t> find_head_end(std::string_view bytes);

/// Validates one HTTP/1.x request head before httplib parses it, so that requests whose
/// framing different parsers could read differently (request smuggling) or whose size
/// would cost memory and time are answered at once and the connection closed.
///
/// `head` is the request line and headers; the blank line that ends them is optional at
/// its end (bytes after the first "\r\n\r\n" are ignored). Refuses, with the status given:
///  - 400: an empty or malformed request line (method not a token, target with spaces or
///    control bytes, version other than HTTP/1.0 or HTTP/1.1); a line ending in a bare LF
///    or a bare CR; a NUL or other control byte in the head; a header line without a
///    colon, with a name that is not a token (e.g. a space before the colon) or folded
///    onto the next line; a Content-Length that is not 1-19 digits or overflows 64 bits;
///    two Content-Length headers that differ; Content-Length and Transfer-Encoding
///    together; more than one Transfer-Encoding header.
///  - 414: a request target longer than `limits.max_target_bytes`.
///  - 416: a Range value longer than `limits.max_range_bytes` (httplib parses Range with
///    a recursive std::regex before any route runs).
///  - 431: more than `limits.max_header_count` headers, or a head longer than
///    `limits.max_head_bytes`.
///  - 501: a Transfer-Encoding other than "chunked".
/// Pure: no allocation beyond the message, no exceptions, linear in `head` for any bytes
/// (a fuzz entry point).
HeadCheck check_request_head(std::string_view head, const HeadLimits& limits);

}  // namespace execd::http
