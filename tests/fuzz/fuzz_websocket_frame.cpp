// Fuzzes http::WsFrameParser, the parser of every byte a WebSocket client sends.
// Properties: the input fed whole and fed in random pieces of 1-64 bytes gives the same
// messages and the same outcome (and close code); no message is over the size limit; a
// text message is valid UTF-8; a failure's close code is one of 1002, 1007, 1009; and a
// data message re-encoded as a masked frame parses back to itself.
//
// Input: byte 0 picks the size limit (1..256 KiB in steps), the rest are client bytes;
// piece sizes come from a PRNG seeded by the input.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "core/utf8.hpp"
#include "http/websocket_frame.hpp"

using execd::http::WsFrameParser;
using execd::http::WsMessage;
using execd::http::WsOpcode;

namespace {

struct Outcome {
  std::vector<std::pair<int, std::string>> messages;
  bool failed = false;
  uint16_t code = 0;
};

[[noreturn]] void broken(const char* what) {
  std::fprintf(stderr, "invariant broken: %s\n", what);
  std::abort();
}

Outcome run(std::string_view bytes, size_t max, uint32_t seed, bool pieces) {
  Outcome out;
  WsFrameParser parser({max, true});
  std::minstd_rand rng(seed);
  size_t pos = 0;
  while (pos < bytes.size() && !out.failed) {
    size_t n = bytes.size() - pos;
    if (pieces) n = std::min<size_t>(n, 1 + rng() % 64);
    parser.feed(bytes.substr(pos, n));
    pos += n;
    WsMessage m;
    for (auto st = parser.next(m); st != WsFrameParser::Status::need_more; st = parser.next(m)) {
      if (st == WsFrameParser::Status::failed) {
        out.failed = true;
        out.code = parser.close_code();
        break;
      }
      out.messages.emplace_back(static_cast<int>(m.opcode), m.payload);
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t max = 1 + (static_cast<size_t>(data[0]) << 10);
  const std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  uint32_t seed = 2166136261u;
  for (const char c : bytes) seed = (seed ^ static_cast<uint8_t>(c)) * 16777619u;

  const Outcome whole = run(bytes, max, seed, false);
  const Outcome split = run(bytes, max, seed, true);
  if (whole.failed != split.failed || whole.code != split.code) broken("outcome depends on how bytes arrive");
  if (whole.messages != split.messages) broken("messages depend on how bytes arrive");
  if (whole.failed && whole.code != 1002 && whole.code != 1007 && whole.code != 1009) broken("unexpected close code");

  for (const auto& [op, payload] : whole.messages) {
    const auto opcode = static_cast<WsOpcode>(op);
    if (opcode != WsOpcode::text && opcode != WsOpcode::binary && opcode != WsOpcode::close &&
        opcode != WsOpcode::ping && opcode != WsOpcode::pong) {
      broken("a message with a frame-only opcode");
    }
    if ((opcode == WsOpcode::text || opcode == WsOpcode::binary) && payload.size() > max) broken("message over limit");
    if (opcode != WsOpcode::text && opcode != WsOpcode::binary && payload.size() > 125) broken("control over 125");
    if (opcode == WsOpcode::text && !execd::core::valid_utf8(payload)) broken("text that is not UTF-8");
    if (opcode == WsOpcode::text || opcode == WsOpcode::binary) {
      WsFrameParser again({max, true});
      again.feed(execd::http::encode_ws_frame(opcode, payload, true, std::array<uint8_t, 4>{1, 2, 3, 4}));
      WsMessage m;
      if (again.next(m) != WsFrameParser::Status::message || m.opcode != opcode || m.payload != payload) {
        broken("re-encoded message does not parse back");
      }
    }
  }
  return 0;
}
