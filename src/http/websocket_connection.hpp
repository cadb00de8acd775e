#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "core/unique_fd.hpp"
#include "http/websocket_frame.hpp"

namespace execd::http {

/// One server-side WebSocket on a socket taken over from the HTTP server
/// (BufferedServer::take_over_connection, after the 101 head was written). It does not
/// own the socket: the connection loop closes it once the handler returns.
///
/// run() is the receive loop, on the handler's thread: it parses client frames, answers
/// pings, hands text and binary messages to the callback, and returns when the connection
/// ends (a close from either side, a protocol error, the idle timeout, the server
/// stopping, or the peer gone). Sends and close() are thread-safe and may come from any
/// thread (a PTY's output pump); a send never blocks longer than the write timeout, and
/// one that fails ends the connection. Every wait is bounded.
class WebSocketConnection {
 public:
  struct Options {
    size_t max_message_bytes = 16u << 20;            ///< larger: close 1009
    std::chrono::milliseconds idle_timeout{300000};  ///< no frame from the client (pongs count): close 1001
    std::chrono::milliseconds ping_interval{30000};  ///< client silent this long: the server pings
    std::chrono::milliseconds write_timeout{10000};  ///< a send waiting longer for room fails
    std::chrono::milliseconds close_timeout{2000};   ///< after our close frame, wait this long for the reply
    const std::atomic<bool>* stopping = nullptr;     ///< set: close 1001 within a second
    /// Called once when the connection starts closing (either side), before our close
    /// frame is written: a peer that has our close frame knows this already ran.
    std::function<void()> on_closing;
  };
  using OnMessage = std::function<void(WsOpcode opcode, std::string& payload)>;

  /// `already_read`: bytes the HTTP server had read past the upgrade request's head.
  WebSocketConnection(int fd, std::string already_read, Options options);
  WebSocketConnection(const WebSocketConnection&) = delete;
  WebSocketConnection& operator=(const WebSocketConnection&) = delete;

  /// Whole messages. False once closing or closed, or when the write failed.
  bool send_text(std::string_view text) { return send(WsOpcode::text, text); }
  bool send_binary(std::string_view bytes) { return send(WsOpcode::binary, bytes); }
  bool send(WsOpcode opcode, std::string_view payload);
  /// Bytes as they are (the 101 response head, before any frame), under the send lock.
  bool send_raw(std::string_view bytes);
  /// Sends a close frame with `code` and `reason` (once; later calls do nothing) and makes
  /// run() return after the peer's reply or the close timeout. Any thread.
  void close(uint16_t code, std::string_view reason);
  /// Receives until the connection ends; returns the close that ended it: the code we
  /// sent when we closed first, else the peer's (kAbnormal when it vanished).
  WsCloseInfo run(const OnMessage& on_message);
  [[nodiscard]] bool is_closing() const { return close_sent_.load(); }

 private:
  bool write_all(std::string_view bytes);  // with send_mu_ held
  void wake();

  int fd_;
  std::string pending_;  // bytes read before run()
  Options options_;
  core::UniqueFd wake_fd_;  // eventfd: close() from another thread wakes the loop
  std::mutex send_mu_;
  std::atomic<bool> close_sent_{false};
  std::atomic<bool> broken_{false};
  WsCloseInfo sent_close_;  // under send_mu_
};

}  // namespace execd::http
