#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include <httplib.h>

namespace execd::http {

/// One accepted connection as httplib sees it, read through a 64 KiB buffer.
///
/// Why not httplib's own SocketStream: Debian's compiled 0.11 reads bodies 4 KiB at a
/// time with a poll(2) before every recv(2), about 530 system calls per MiB uploaded,
/// and polls before every send. Here reads are served from the buffer, recv and send
/// are tried first, and a poll happens only when the socket is empty (or full). The
/// stream lives as long as the connection, so bytes of a pipelined next request are
/// kept rather than dropped between requests.
///
/// The read timeout bounds each wait for bytes; a request's line and headers must also
/// arrive, all of them, within one read timeout of the request's start, so a client
/// trickling a byte now and then cannot hold a connection (and its thread) for ever.
///
/// Lines httplib reads a byte at a time (chunk sizes, trailers) are bounded by
/// kMaxLineBytes: past it a read fails, where httplib would grow a string for ever.
class ConnectionStream final : public httplib::Stream {
 public:
  static constexpr size_t kBufferSize = 64 * 1024;
  static constexpr size_t kMaxLineBytes = 64 * 1024;

  /// Takes no ownership of `fd` (the server closes it).
  ConnectionStream(int fd, std::chrono::milliseconds read_timeout, std::chrono::milliseconds write_timeout);

  /// True when a byte is buffered or arrives within the read timeout.
  bool is_readable() const override;
  /// False once a write has failed. Never blocks: write() waits for room itself.
  bool is_writable() const override;
  /// Up to `size` bytes; -1 on error, read timeout or end of stream.
  ssize_t read(char* ptr, size_t size) override;
  /// Up to `size` bytes, waiting up to the write timeout for room; -1 on error.
  ssize_t write(const char* ptr, size_t size) override;
  void get_remote_ip_and_port(std::string& ip, int& port) const override;
  void get_local_ip_and_port(std::string& ip, int& port) const override;
  socket_t socket() const override { return fd_; }

  /// Marks the start of a request: from now until the blank line that ends its headers,
  /// reads fail once the read timeout has passed since this call.
  void begin_request();
  /// True when a read failed because the head's deadline passed (the connection should
  /// close: httplib answers 400 and would otherwise wait for another request).
  [[nodiscard]] bool head_timed_out() const { return head_timed_out_; }
  /// True when a read failed on the head's or the body's deadline, or on a line longer
  /// than kMaxLineBytes: the connection must close.
  [[nodiscard]] bool is_spoiled() const { return head_timed_out_ || body_timed_out_ || line_too_long_; }

  /// Outcome of peek_head().
  enum class HeadWait { ready, too_large, failed };
  /// Reads (within the head's deadline) until the buffer holds a whole request head —
  /// through the first "\r\n\r\n" — and sets `head` to it without consuming it; the
  /// buffer grows up to `max_bytes` if that is more than kBufferSize. too_large when
  /// `max_bytes` bytes hold no end; failed on end of stream, error or deadline. Costs no
  /// system call beyond the receives httplib would have made.
  HeadWait peek_head(size_t max_bytes, std::string_view& head);

  /// From now on, reads fail once `within` has passed (a body must arrive in time, not a
  /// byte every read timeout). begin_request() lifts it.
  void bound_body(std::chrono::milliseconds within);

  /// Reads and drops what the peer still sends, up to `max_bytes` or `max_time`, so that
  /// closing after an early answer does not reset the connection before the peer has
  /// read that answer.
  void drain(size_t max_bytes, std::chrono::milliseconds max_time);

  /// Waits up to `timeout` for the first byte of the next request on a kept-alive
  /// connection. False on timeout, end of stream, or once `stop_fd` (an eventfd, -1:
  /// none) is readable — the server stopping — so idle connections cost no wake-ups.
  bool wait_for_request(std::chrono::milliseconds timeout, int stop_fd) const;

  /// Hands the connection over to a handler that speaks another protocol on it (a
  /// WebSocket relayed by the reverse proxy): returns the bytes already read past the
  /// current request's head, and from now on reads fail and writes are swallowed, so
  /// what httplib writes after the handler returns never reaches the peer.
  std::string detach();
  [[nodiscard]] bool is_detached() const { return detached_; }

 private:
  size_t buffered() const { return end_ - begin_; }
  /// poll(2) on the socket: 1 ready, 0 timed out, -1 error.
  int poll_for(short events, std::chrono::milliseconds timeout) const;
  /// recv(2) without blocking; when the socket is empty, waits up to the read timeout
  /// (or to the head deadline, while reading the head).
  ssize_t receive(char* ptr, size_t size);
  /// Follows the bytes handed out while reading the head, to see where it ends.
  void track_head(const char* p, size_t n);
  /// True while reads are bound to deadline_ (the head, or a bounded body).
  bool is_bounded() const { return in_head_ || body_bounded_; }

  int fd_;
  std::chrono::milliseconds read_timeout_;
  std::chrono::milliseconds write_timeout_;
  std::unique_ptr<char[]> buffer_;
  size_t capacity_ = kBufferSize;
  size_t begin_ = 0;
  size_t end_ = 0;
  bool broken_ = false;
  bool detached_ = false;
  bool in_head_ = false;
  bool head_timed_out_ = false;
  bool body_bounded_ = false;
  bool body_timed_out_ = false;
  bool line_too_long_ = false;
  size_t head_line_length_ = 0;  // characters since the last '\n', '\r' not counted
  size_t byte_run_ = 0;          // one-byte reads since the last '\n'
  std::chrono::steady_clock::time_point deadline_;
};

}  // namespace execd::http
