#pragma once

#include <httplib.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace execd::http {

/// RFC 6455 server side, the byte-level half: the handshake's checks and accept value,
/// an incremental frame parser, a frame writer. No sockets here (WebSocketConnection
/// drives these over a connection taken from the HTTP server).

enum class WsOpcode : uint8_t { continuation = 0x0, text = 0x1, binary = 0x2, close = 0x8, ping = 0x9, pong = 0xA };

/// Close codes used by the server (RFC 6455 7.4.1, plus the application's 4001).
namespace ws_close {
inline constexpr uint16_t kNormal = 1000;
inline constexpr uint16_t kGoingAway = 1001;
inline constexpr uint16_t kProtocolError = 1002;
inline constexpr uint16_t kInvalidData = 1007;  ///< text that is not UTF-8
inline constexpr uint16_t kPolicy = 1008;
inline constexpr uint16_t kTooBig = 1009;
inline constexpr uint16_t kInternal = 1011;
inline constexpr uint16_t kNoStatus = 1005;   ///< a close frame without a code (never sent)
inline constexpr uint16_t kAbnormal = 1006;   ///< no close frame at all (never sent)
inline constexpr uint16_t kTakenOver = 4001;  ///< another client took the session over
}  // namespace ws_close

/// Sec-WebSocket-Accept for a client's Sec-WebSocket-Key: base64(SHA-1(key + GUID)).
std::string websocket_accept(std::string_view client_key);

/// What a valid upgrade request carried.
struct WsUpgrade {
  std::string key;                     ///< Sec-WebSocket-Key as sent
  std::vector<std::string> protocols;  ///< Sec-WebSocket-Protocol offers, in order, trimmed
};

/// Why an upgrade request is refused: `status` 400 (not a valid upgrade) or 426 (a
/// version other than 13; the answer must carry `Sec-WebSocket-Version: 13`).
struct WsUpgradeError {
  int status = 400;
  std::string message;
};

/// Checks a request against RFC 6455 4.2.1: GET, `Upgrade: websocket`, an `upgrade` token
/// in Connection, `Sec-WebSocket-Version: 13`, a key that is base64 of 16 bytes.
std::optional<WsUpgradeError> check_websocket_upgrade(const httplib::Request& req, WsUpgrade& out);

/// A WebSocket upgrade may carry the access token as the subprotocol `<prefix><token>`
/// (browsers cannot set headers on a WebSocket); HttpServer checks it.
inline constexpr std::string_view kTokenSubprotocolPrefix = "execd.token.";

/// A Sec-WebSocket-Protocol value without its token offers (what may go upstream): the
/// other offers, comma-separated; empty when none is left.
std::string without_token_offers(std::string_view protocols);

/// The Sec-WebSocket-Protocol offers of `req`, in order, trimmed (every instance of the
/// header, comma-separated).
std::vector<std::string> websocket_protocols(const httplib::Request& req);

/// The 101 response head (through the blank line) accepting `key`, naming `protocol`
/// when non-empty, plus `extra_headers` (each "Name: value\r\n").
std::string websocket_accept_head(std::string_view key, std::string_view protocol, std::string_view extra_headers = {});

/// One frame as written: FIN set unless `fin` is false; masked with `mask` when given
/// (clients mask, servers do not).
std::string encode_ws_frame(WsOpcode opcode, std::string_view payload, bool fin = true,
                            std::optional<std::array<uint8_t, 4>> mask = std::nullopt);
/// A close frame's payload: the code big-endian, then the reason (cut to fit 125 bytes).
std::string ws_close_payload(uint16_t code, std::string_view reason);

/// A complete message (continuations reassembled) or a control frame.
struct WsMessage {
  WsOpcode opcode = WsOpcode::binary;  ///< text, binary, close, ping or pong
  std::string payload;                 ///< unmasked; for close: code + reason as sent
};

/// Incremental parser of client frames. Feed bytes as they arrive; next() hands out
/// whole messages. A protocol violation ends parsing for good with the close code to send:
/// 1002 for reserved bits, unknown opcodes, an unmasked frame (when masks are required),
/// a fragmented or over-125-byte control frame, a continuation with nothing to continue
/// or a new data frame inside a fragmented one, a bad close payload; 1009 for a message
/// over the size limit (known from the frame header, before its payload is buffered);
/// 1007 for a text message (or close reason) that is not UTF-8. Memory is at most one
/// message plus one frame header beyond the limit. Not thread-safe.
class WsFrameParser {
 public:
  struct Options {
    size_t max_message_bytes = 16u << 20;
    bool require_mask = true;  ///< client-to-server frames must be masked
  };
  enum class Status { message, need_more, failed };

  WsFrameParser() : WsFrameParser(Options{}) {}
  explicit WsFrameParser(Options options) : options_(options) {}

  void feed(std::string_view bytes);
  /// `message` fills `out`; need_more when no whole message is buffered; failed once a
  /// violation was found (then close_code()/close_reason() say what to send).
  Status next(WsMessage& out);
  [[nodiscard]] uint16_t close_code() const { return close_code_; }
  [[nodiscard]] const std::string& close_reason() const { return close_reason_; }
  /// Bytes fed but not yet consumed (for tests and memory bounds).
  [[nodiscard]] size_t buffered() const { return buf_.size() - pos_; }

 private:
  Status fail(uint16_t code, std::string reason);

  Options options_;
  std::string buf_;
  size_t pos_ = 0;
  bool in_fragmented_ = false;
  WsOpcode fragmented_opcode_ = WsOpcode::binary;
  std::string fragments_;
  bool failed_ = false;
  uint16_t close_code_ = 0;
  std::string close_reason_;
};

/// Parses a close frame's payload: code (kNoStatus when empty) and reason.
struct WsCloseInfo {
  uint16_t code = ws_close::kNoStatus;
  std::string reason;
};
WsCloseInfo parse_ws_close(std::string_view payload);

}  // namespace execd::http
