#include "http/websocket_frame.hpp"

#include <openssl/sha.h>

#include <algorithm>
#include <cctype>
#include <cstring>

#include "core/utf8.hpp"

namespace execd::http {
namespace {

constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";  // RFC 6455 1.3
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64(const unsigned char* p, size_t n) {
  std::string out;
  out.reserve((n + 2) / 3 * 4);
  for (size_t i = 0; i < n; i += 3) {
    const uint32_t v =
        (uint32_t{p[i]} << 16) | (i + 1 < n ? uint32_t{p[i + 1]} << 8 : 0u) | (i + 2 < n ? uint32_t{p[i + 2]} : 0u);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < n ? kAlphabet[(v >> 6) & 63] : '=';
    out += i + 2 < n ? kAlphabet[v & 63] : '=';
  }
  return out;
}

// Length of what `s` decodes to when it is canonical base64 (padding included), else -1.
long base64_decoded_size(std::string_view s) {
  if (s.empty() || s.size() % 4 != 0) return -1;
  size_t pad = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '=') {
      if (i < s.size() - 2) return -1;
      ++pad;
      continue;
    }
    if (pad > 0 || std::strchr(kAlphabet, c) == nullptr || c == '\0') return -1;
  }
  return static_cast<long>(s.size() / 4 * 3 - pad);
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The comma-separated elements of every instance of header `name`, trimmed.
std::vector<std::string> header_tokens(const httplib::Request& req, const char* name) {
  std::vector<std::string> out;
  auto [first, last] = req.headers.equal_range(name);
  for (auto it = first; it != last; ++it) {
    std::string_view v = it->second;
    while (!v.empty()) {
      const size_t comma = v.find(',');
      const std::string_view item = trim(v.substr(0, comma));
      if (!item.empty()) out.emplace_back(item);
      if (comma == std::string_view::npos) break;
      v.remove_prefix(comma + 1);
    }
  }
  return out;
}

bool is_control(WsOpcode op) {
  return (static_cast<uint8_t>(op) & 0x8) != 0;
}

bool is_known(uint8_t op) {
  return op <= 0x2 || (op >= 0x8 && op <= 0xA);
}

// RFC 6455 7.4: codes a peer may send (1005, 1006, 1015 are never on the wire).
bool is_valid_close_code(uint16_t code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

}  // namespace

std::string websocket_accept(std::string_view client_key) {
  std::string material(client_key);
  material += kGuid;
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(material.data()), material.size(), digest);
  return base64(digest, sizeof digest);
}

std::optional<WsUpgradeError> check_websocket_upgrade(const httplib::Request& req, WsUpgrade& out) {
  if (req.method != "GET") return WsUpgradeError{400, "a WebSocket upgrade must be a GET, not " + req.method};
  const auto upgrade = header_tokens(req, "Upgrade");
  if (std::none_of(upgrade.begin(), upgrade.end(), [](const std::string& t) { return iequals(t, "websocket"); })) {
    return WsUpgradeError{400, "a WebSocket upgrade needs the header 'Upgrade: websocket'"};
  }
  const auto connection = header_tokens(req, "Connection");
  if (std::none_of(connection.begin(), connection.end(), [](const std::string& t) { return iequals(t, "upgrade"); })) {
    return WsUpgradeError{400, "a WebSocket upgrade needs 'upgrade' in the Connection header"};
  }
  const std::string version = std::string(trim(req.get_header_value("Sec-WebSocket-Version")));
  if (version != "13") {
    return WsUpgradeError{426, "Sec-WebSocket-Version must be 13" +
                                   (version.empty() ? std::string(" (it is missing)") : " (got '" + version + "')")};
  }
  const std::string key = std::string(trim(req.get_header_value("Sec-WebSocket-Key")));
  if (base64_decoded_size(key) != 16) {
    return WsUpgradeError{400, "Sec-WebSocket-Key must be the base64 of 16 bytes"};
  }
  out.key = key;
  out.protocols = websocket_protocols(req);
  return std::nullopt;
}

std::vector<std::string> websocket_protocols(const httplib::Request& req) {
  return header_tokens(req, "Sec-WebSocket-Protocol");
}

std::string without_token_offers(std::string_view protocols) {
  std::string kept;
  while (!protocols.empty()) {
    const size_t comma = protocols.find(',');
    const std::string_view item = trim(protocols.substr(0, comma));
    if (!item.empty() && item.substr(0, kTokenSubprotocolPrefix.size()) != kTokenSubprotocolPrefix) {
      if (!kept.empty()) kept += ", ";
      kept += item;
    }
    if (comma == std::string_view::npos) break;
    protocols.remove_prefix(comma + 1);
  }
  return kept;
}

std::string websocket_accept_head(std::string_view key, std::string_view protocol, std::string_view extra_headers) {
  std::string head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
  head += "Sec-WebSocket-Accept: " + websocket_accept(key) + "\r\n";
  if (!protocol.empty()) head += "Sec-WebSocket-Protocol: " + std::string(protocol) + "\r\n";
  head += extra_headers;
  head += "\r\n";
  return head;
}

std::string encode_ws_frame(WsOpcode opcode, std::string_view payload, bool fin,
                            std::optional<std::array<uint8_t, 4>> mask) {
  std::string out;
  out.reserve(payload.size() + 14);
  out += static_cast<char>((fin ? 0x80 : 0x00) | static_cast<uint8_t>(opcode));
  const uint8_t mask_bit = mask ? 0x80 : 0x00;
  const uint64_t n = payload.size();
  if (n <= 125) {
    out += static_cast<char>(mask_bit | n);
  } else if (n <= 0xFFFF) {
    out += static_cast<char>(mask_bit | 126);
    out += static_cast<char>(n >> 8);
    out += static_cast<char>(n & 0xFF);
  } else {
    out += static_cast<char>(mask_bit | 127);
    for (int shift = 56; shift >= 0; shift -= 8) out += static_cast<char>((n >> shift) & 0xFF);
  }
  if (!mask) {
    out.append(payload);
    return out;
  }
  for (const uint8_t b : *mask) out += static_cast<char>(b);
  const size_t at = out.size();
  out.append(payload);
  for (size_t i = 0; i < payload.size(); ++i) out[at + i] = static_cast<char>(out[at + i] ^ (*mask)[i & 3]);
  return out;
}

std::string ws_close_payload(uint16_t code, std::string_view reason) {
  std::string out;
  out += static_cast<char>(code >> 8);
  out += static_cast<char>(code & 0xFF);
  reason = reason.substr(0, 123);
  // Never cut inside a UTF-8 sequence: the peer would fail the close with 1007.
  while (!reason.empty() && !core::valid_utf8(reason)) reason.remove_suffix(1);
  out.append(reason);
  return out;
}

WsCloseInfo parse_ws_close(std::string_view payload) {
  WsCloseInfo info;
  if (payload.size() < 2) return info;
  info.code = static_cast<uint16_t>((static_cast<uint8_t>(payload[0]) << 8) | static_cast<uint8_t>(payload[1]));
  info.reason = std::string(payload.substr(2));
  return info;
}

void WsFrameParser::feed(std::string_view bytes) {
  if (failed_) return;
  // Drop what was consumed before growing, so the buffer holds at most one frame's worth.
  if (pos_ > 0 && (pos_ == buf_.size() || pos_ >= 64 * 1024)) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  buf_.append(bytes);
}

WsFrameParser::Status WsFrameParser::fail(uint16_t code, std::string reason) {
  failed_ = true;
  close_code_ = code;
  close_reason_ = std::move(reason);
  buf_.clear();
  pos_ = 0;
  fragments_.clear();
  return Status::failed;
}

WsFrameParser::Status WsFrameParser::next(WsMessage& out) {
  while (!failed_) {
    const size_t avail = buf_.size() - pos_;
    if (avail < 2) return Status::need_more;
    const auto* p = reinterpret_cast<const uint8_t*>(buf_.data() + pos_);
    const bool fin = (p[0] & 0x80) != 0;
    if ((p[0] & 0x70) != 0) return fail(ws_close::kProtocolError, "reserved bits set (no extension was agreed)");
    const uint8_t raw_op = p[0] & 0x0F;
    if (!is_known(raw_op)) return fail(ws_close::kProtocolError, "unknown opcode " + std::to_string(raw_op));
    const auto op = static_cast<WsOpcode>(raw_op);
    const bool masked = (p[1] & 0x80) != 0;
    if (options_.require_mask && !masked) return fail(ws_close::kProtocolError, "client frames must be masked");
    uint64_t len = p[1] & 0x7F;
    size_t header = 2;
    if (len == 126) {
      if (avail < 4) return Status::need_more;
      len = (uint64_t{p[2]} << 8) | p[3];
      header = 4;
      if (len < 126) return fail(ws_close::kProtocolError, "length not in its shortest form");
    } else if (len == 127) {
      if (avail < 10) return Status::need_more;
      len = 0;
      for (int i = 0; i < 8; ++i) len = (len << 8) | p[2 + i];
      header = 10;
      if (len >> 63) return fail(ws_close::kProtocolError, "64-bit length with its top bit set");
      if (len <= 0xFFFF) return fail(ws_close::kProtocolError, "length not in its shortest form");
    }
    if (is_control(op)) {
      if (!fin) return fail(ws_close::kProtocolError, "fragmented control frame");
      if (len > 125) return fail(ws_close::kProtocolError, "control frame over 125 bytes");
    } else if (op == WsOpcode::continuation) {
      if (!in_fragmented_) return fail(ws_close::kProtocolError, "continuation frame with no message to continue");
    } else if (in_fragmented_) {
      return fail(ws_close::kProtocolError, "new data frame inside a fragmented message");
    }
    const uint64_t so_far = op == WsOpcode::continuation ? fragments_.size() : 0;
    if (!is_control(op) && len + so_far > options_.max_message_bytes) {
      return fail(ws_close::kTooBig, "message over " + std::to_string(options_.max_message_bytes) + " bytes");
    }
    if (masked) header += 4;
    if (avail < header + len) return Status::need_more;

    std::string payload(buf_.data() + pos_ + header, static_cast<size_t>(len));
    if (masked) {
      const uint8_t* key = p + header - 4;
      for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(payload[i] ^ key[i & 3]);
    }
    pos_ += header + static_cast<size_t>(len);
    if (pos_ == buf_.size()) {
      buf_.clear();
      pos_ = 0;
    }

    if (is_control(op)) {
      if (op == WsOpcode::close) {
        if (payload.size() == 1) return fail(ws_close::kProtocolError, "close frame with a 1-byte payload");
        if (payload.size() >= 2) {
          const WsCloseInfo info = parse_ws_close(payload);
          if (!is_valid_close_code(info.code)) {
            return fail(ws_close::kProtocolError, "invalid close code " + std::to_string(info.code));
          }
          if (!core::valid_utf8(info.reason)) return fail(ws_close::kInvalidData, "close reason is not UTF-8");
        }
      }
      out.opcode = op;
      out.payload = std::move(payload);
      return Status::message;
    }
    if (op != WsOpcode::continuation && fin) {
      if (op == WsOpcode::text && !core::valid_utf8(payload)) {
        return fail(ws_close::kInvalidData, "text message is not UTF-8");
      }
      out.opcode = op;
      out.payload = std::move(payload);
      return Status::message;
    }
    if (op != WsOpcode::continuation) {
      in_fragmented_ = true;
      fragmented_opcode_ = op;
      fragments_ = std::move(payload);
    } else {
      fragments_ += payload;
    }
    if (!fin) continue;
    in_fragmented_ = false;
    if (fragmented_opcode_ == WsOpcode::text && !core::valid_utf8(fragments_)) {
      return fail(ws_close::kInvalidData, "text message is not UTF-8");
    }
    out.opcode = fragmented_opcode_;
    out.payload = std::move(fragments_);
    fragments_.clear();
    return Status::message;
  }
  return Status::failed;
}

}  // namespace execd::http
