#include <doctest/doctest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "core/unique_fd.hpp"
#include "http/websocket_connection.hpp"
#include "http/websocket_frame.hpp"

using namespace execd;
using namespace std::chrono_literals;
using http::WsFrameParser;
using http::WsMessage;
using http::WsOpcode;

namespace {

constexpr std::array<uint8_t, 4> kMask{0x37, 0xfa, 0x21, 0x3d};

std::string masked(WsOpcode op, std::string_view payload, bool fin = true) {
  return http::encode_ws_frame(op, payload, fin, kMask);
}

// Feeds `bytes` (in pieces of `piece`) and collects every message until need_more/failed.
std::vector<WsMessage> parse_all(WsFrameParser& p, const std::string& bytes, size_t piece,
                                 WsFrameParser::Status* last) {
  std::vector<WsMessage> out;
  WsFrameParser::Status st = WsFrameParser::Status::need_more;
  for (size_t i = 0; i < bytes.size(); i += piece) {
    p.feed(std::string_view(bytes).substr(i, piece));
    WsMessage m;
    while ((st = p.next(m)) == WsFrameParser::Status::message) out.push_back(m);
    if (st == WsFrameParser::Status::failed) break;
  }
  if (last != nullptr) *last = st;
  return out;
}

uint16_t failure_code(const std::string& bytes, size_t max = 1 << 20) {
  WsFrameParser p({max, true});
  WsFrameParser::Status st;
  parse_all(p, bytes, bytes.size() == 0 ? 1 : bytes.size(), &st);
  if (st != WsFrameParser::Status::failed) return 0;
  return p.close_code();
}

httplib::Request upgrade_request() {
  httplib::Request req;
  req.method = "GET";
  req.headers.emplace("Upgrade", "websocket");
  req.headers.emplace("Connection", "keep-alive, Upgrade");
  req.headers.emplace("Sec-WebSocket-Version", "13");
  req.headers.emplace("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
  return req;
}

struct SocketPair {
  core::UniqueFd server;
  core::UniqueFd client;
  SocketPair() {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    server.reset(fds[0]);
    client.reset(fds[1]);
  }
  void send(const std::string& s) const {
    REQUIRE(::write(client.get(), s.data(), s.size()) == static_cast<ssize_t>(s.size()));
  }
};

// Reads server frames (unmasked) from `fd` until one whole message arrives or `within` passes.
struct FrameReader {
  WsFrameParser parser{{1u << 24, false}};
  std::optional<WsMessage> next(int fd, std::chrono::milliseconds within = 5000ms) {
    const auto deadline = std::chrono::steady_clock::now() + within;
    while (true) {
      WsMessage m;
      const auto st = parser.next(m);
      if (st == WsFrameParser::Status::message) return m;
      if (st == WsFrameParser::Status::failed) return std::nullopt;
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return std::nullopt;
      char buf[65536];
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) return std::nullopt;
      parser.feed(std::string_view(buf, static_cast<size_t>(n)));
    }
  }
};

}  // namespace

TEST_CASE("the accept value is RFC 6455's example, from OpenSSL's SHA-1") {
  CHECK(http::websocket_accept("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  const std::string head = http::websocket_accept_head("dGhlIHNhbXBsZSBub25jZQ==", "execd");
  CHECK(head.rfind("HTTP/1.1 101 Switching Protocols\r\n", 0) == 0);
  CHECK(head.find("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n") != std::string::npos);
  CHECK(head.find("Sec-WebSocket-Protocol: execd\r\n") != std::string::npos);
  CHECK(head.substr(head.size() - 4) == "\r\n\r\n");
}

TEST_CASE("an upgrade request is checked: method, Upgrade, Connection token, version 13 (else 426), a 16-byte key") {
  http::WsUpgrade up;
  auto req = upgrade_request();
  req.headers.emplace("Sec-WebSocket-Protocol", "execd, execd.token.abc");
  CHECK_FALSE(http::check_websocket_upgrade(req, up).has_value());
  CHECK(up.key == "dGhlIHNhbXBsZSBub25jZQ==");
  REQUIRE(up.protocols.size() == 2);
  CHECK(up.protocols[1] == "execd.token.abc");

  auto post = upgrade_request();
  post.method = "POST";
  CHECK(http::check_websocket_upgrade(post, up)->status == 400);

  auto no_upgrade = upgrade_request();
  no_upgrade.headers.erase("Upgrade");
  auto e = http::check_websocket_upgrade(no_upgrade, up);
  REQUIRE(e.has_value());
  CHECK(e->status == 400);
  CHECK(e->message.find("Upgrade") != std::string::npos);

  auto no_token = upgrade_request();
  no_token.headers.erase("Connection");
  no_token.headers.emplace("Connection", "keep-alive");
  CHECK(http::check_websocket_upgrade(no_token, up)->status == 400);

  auto old = upgrade_request();
  old.headers.erase("Sec-WebSocket-Version");
  old.headers.emplace("Sec-WebSocket-Version", "8");
  e = http::check_websocket_upgrade(old, up);
  REQUIRE(e.has_value());
  CHECK(e->status == 426);

  for (const char* key :
       {"", "abc", "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZQ=!", "AAAAAAAAAAAAAAAAAAAAAAAA"}) {
    auto bad = upgrade_request();
    bad.headers.erase("Sec-WebSocket-Key");
    bad.headers.emplace("Sec-WebSocket-Key", key);
    INFO("key: " << key);
    e = http::check_websocket_upgrade(bad, up);
    REQUIRE(e.has_value());
    CHECK(e->status == 400);
  }
}

TEST_CASE("token offers are taken out of a Sec-WebSocket-Protocol value before it goes upstream") {
  CHECK(http::without_token_offers("execd, execd.token.s3cret") == "execd");
  CHECK(http::without_token_offers(" chat ,execd.token.x, superchat") == "chat, superchat");
  CHECK(http::without_token_offers("execd.token.only").empty());
  CHECK(http::without_token_offers("").empty());
}

TEST_CASE("a masked frame is unmasked: RFC 6455's 'Hello' bytes, fed a byte at a time") {
  const std::string rfc = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
  CHECK(masked(WsOpcode::text, "Hello") == rfc);
  WsFrameParser p;
  WsFrameParser::Status st;
  const auto msgs = parse_all(p, rfc, 1, &st);
  REQUIRE(msgs.size() == 1);
  CHECK(msgs[0].opcode == WsOpcode::text);
  CHECK(msgs[0].payload == "Hello");
  CHECK(p.buffered() == 0);
}

TEST_CASE("server frames are unmasked with 7-, 16- and 64-bit lengths in their shortest form") {
  CHECK(http::encode_ws_frame(WsOpcode::binary, std::string(125, 'a')).substr(0, 2) == std::string("\x82\x7d"));
  const std::string f126 = http::encode_ws_frame(WsOpcode::binary, std::string(126, 'a'));
  CHECK(f126.substr(0, 4) == std::string("\x82\x7e\x00\x7e", 4));
  CHECK(f126.size() == 4 + 126);
  const std::string f65535 = http::encode_ws_frame(WsOpcode::binary, std::string(65535, 'a'));
  CHECK(f65535.substr(0, 4) == std::string("\x82\x7e\xff\xff", 4));
  const std::string f65536 = http::encode_ws_frame(WsOpcode::binary, std::string(65536, 'a'));
  CHECK(f65536.substr(0, 10) == std::string("\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10));
  CHECK(f65536.size() == 10 + 65536);
}

TEST_CASE("16- and 64-bit lengths parse, whole and in odd pieces") {
  std::string p300(300, 'x');
  std::string p70k(70000, '\0');
  for (size_t i = 0; i < p70k.size(); ++i) p70k[i] = static_cast<char>(i * 7);
  const std::string bytes = masked(WsOpcode::binary, p300) + masked(WsOpcode::binary, p70k);
  for (const size_t piece : {bytes.size(), size_t{1}, size_t{7}, size_t{4096}}) {
    WsFrameParser p;
    WsFrameParser::Status st;
    const auto msgs = parse_all(p, bytes, piece, &st);
    REQUIRE(msgs.size() == 2);
    CHECK(msgs[0].payload == p300);
    CHECK(msgs[1].payload == p70k);
  }
}

TEST_CASE("fragments are reassembled, with a control frame between them handed out first") {
  const std::string bytes = masked(WsOpcode::text, "Hel", false) + masked(WsOpcode::ping, "p?") +
                            masked(WsOpcode::continuation, "lo ", false) + masked(WsOpcode::continuation, "world");
  WsFrameParser p;
  WsFrameParser::Status st;
  const auto msgs = parse_all(p, bytes, 3, &st);
  REQUIRE(msgs.size() == 2);
  CHECK(msgs[0].opcode == WsOpcode::ping);
  CHECK(msgs[0].payload == "p?");
  CHECK(msgs[1].opcode == WsOpcode::text);
  CHECK(msgs[1].payload == "Hello world");
  // A UTF-8 sequence split across two fragments is fine: the message is checked whole.
  const std::string euro = "\xe2\x82\xac";
  WsFrameParser q;
  const auto split = parse_all(
      q, masked(WsOpcode::text, euro.substr(0, 1), false) + masked(WsOpcode::continuation, euro.substr(1)), 100, &st);
  REQUIRE(split.size() == 1);
  CHECK(split[0].payload == euro);
}

TEST_CASE("every bad frame fails with 1002") {
  CHECK(failure_code(http::encode_ws_frame(WsOpcode::text, "hi")) == 1002);  // unmasked
  std::string rsv = masked(WsOpcode::text, "hi");
  rsv[0] = static_cast<char>(rsv[0] | 0x40);
  CHECK(failure_code(rsv) == 1002);
  for (const uint8_t op : {0x3, 0x7, 0xB, 0xF}) {
    std::string unknown = masked(WsOpcode::binary, "x");
    unknown[0] = static_cast<char>(0x80 | op);
    CHECK(failure_code(unknown) == 1002);
  }
  CHECK(failure_code(masked(WsOpcode::ping, "x", false)) == 1002);             // fragmented control
  CHECK(failure_code(masked(WsOpcode::ping, std::string(126, 'x'))) == 1002);  // control > 125
  CHECK(failure_code(masked(WsOpcode::continuation, "x")) == 1002);            // nothing to continue
  CHECK(failure_code(masked(WsOpcode::text, "a", false) + masked(WsOpcode::binary, "b")) == 1002);
  CHECK(failure_code(masked(WsOpcode::close, "\x03")) == 1002);  // 1-byte close
  CHECK(failure_code(masked(WsOpcode::close, http::ws_close_payload(1005, ""))) == 1002);
  CHECK(failure_code(masked(WsOpcode::close, http::ws_close_payload(999, ""))) == 1002);
  // A 16-bit length of 5: not the shortest form.
  std::string longform = "\x82\xfe";
  longform += std::string("\x00\x05", 2) + std::string(kMask.begin(), kMask.end()) + "abcde";
  CHECK(failure_code(longform) == 1002);
  // A failed parser stays failed: later good bytes are not parsed.
  WsFrameParser p;
  p.feed(http::encode_ws_frame(WsOpcode::text, "x"));
  WsMessage m;
  CHECK(p.next(m) == WsFrameParser::Status::failed);
  p.feed(masked(WsOpcode::text, "ok"));
  CHECK(p.next(m) == WsFrameParser::Status::failed);
}

TEST_CASE("a message over the limit fails with 1009 from its header, whole or fragmented") {
  CHECK(failure_code(masked(WsOpcode::binary, std::string(1000, 'a')), 1000) == 0);
  // Only the header is fed: the limit is seen before the payload is buffered.
  CHECK(failure_code(masked(WsOpcode::binary, std::string(1001, 'a')).substr(0, 8), 1000) == 1009);
  CHECK(failure_code(masked(WsOpcode::binary, std::string(600, 'a'), false) +
                         masked(WsOpcode::continuation, std::string(600, 'a')),
                     1000) == 1009);
  // 64-bit length of 2^40: refused from the header.
  std::string huge = "\x82\xff";
  huge += std::string("\x00\x00\x01\x00\x00\x00\x00\x00", 8);
  CHECK(failure_code(huge, 1 << 20) == 1009);
}

TEST_CASE("text that is not UTF-8 fails with 1007; binary is not checked") {
  CHECK(failure_code(masked(WsOpcode::text, "ok\xff")) == 1007);
  CHECK(failure_code(masked(WsOpcode::text, "\xc3", false) + masked(WsOpcode::continuation, "(")) == 1007);
  CHECK(failure_code(masked(WsOpcode::close, http::ws_close_payload(1000, "") + "\xff")) == 1007);
  CHECK(failure_code(masked(WsOpcode::binary, "\xff\xfe")) == 0);
}

TEST_CASE("close payloads: code big-endian plus a reason cut to 123 bytes on a UTF-8 boundary") {
  const std::string p = http::ws_close_payload(4001, "TAKEN_OVER");
  CHECK(p == std::string("\x0f\xa1TAKEN_OVER", 12));
  const auto info = http::parse_ws_close(p);
  CHECK(info.code == 4001);
  CHECK(info.reason == "TAKEN_OVER");
  std::string long_reason(122, 'a');
  long_reason += "\xe2\x82\xac";  // a 3-byte character across the 123-byte cut
  CHECK(http::ws_close_payload(1000, long_reason).size() == 2 + 122);
  CHECK(http::parse_ws_close("").code == http::ws_close::kNoStatus);
}

TEST_CASE("connection: messages reach the callback, a ping is answered with the same payload, a close is echoed") {
  SocketPair sp;
  http::WebSocketConnection ws(sp.server.get(), masked(WsOpcode::text, "early"), {});
  std::vector<std::string> got;
  http::WsCloseInfo ended;
  std::thread t([&] { ended = ws.run([&](WsOpcode, std::string& payload) { got.push_back(payload); }); });
  sp.send(masked(WsOpcode::ping, "abc"));
  FrameReader r;
  auto pong = r.next(sp.client.get());
  REQUIRE(pong.has_value());
  CHECK(pong->opcode == WsOpcode::pong);
  CHECK(pong->payload == "abc");
  CHECK(ws.send_binary(std::string("\x01hi", 3)));
  auto bin = r.next(sp.client.get());
  REQUIRE(bin.has_value());
  CHECK(bin->payload == std::string("\x01hi", 3));
  sp.send(masked(WsOpcode::binary, "b1") + masked(WsOpcode::close, http::ws_close_payload(1000, "bye")));
  auto echo = r.next(sp.client.get());
  REQUIRE(echo.has_value());
  CHECK(echo->opcode == WsOpcode::close);
  CHECK(http::parse_ws_close(echo->payload).code == 1000);
  t.join();
  CHECK(ended.code == 1000);
  CHECK(ended.reason == "bye");
  CHECK(got == std::vector<std::string>{"early", "b1"});
  CHECK_FALSE(ws.send_text("late"));
}

TEST_CASE("connection: close() from another thread sends 4001 TAKEN_OVER and run() returns after the reply") {
  SocketPair sp;
  http::WebSocketConnection ws(sp.server.get(), "", {});
  http::WsCloseInfo ended;
  std::thread t([&] { ended = ws.run(nullptr); });
  std::this_thread::sleep_for(50ms);
  std::thread closer([&] { ws.close(http::ws_close::kTakenOver, "TAKEN_OVER"); });
  FrameReader r;
  auto c = r.next(sp.client.get());
  REQUIRE(c.has_value());
  CHECK(c->opcode == WsOpcode::close);
  const auto info = http::parse_ws_close(c->payload);
  CHECK(info.code == 4001);
  CHECK(info.reason == "TAKEN_OVER");
  sp.send(masked(WsOpcode::close, http::ws_close_payload(4001, "")));
  t.join();
  closer.join();
  CHECK(ended.code == 4001);
}

TEST_CASE("connection: a bad frame closes with 1002 and its reason; a peer that vanishes ends it as 1006") {
  {
    SocketPair sp;
    http::WebSocketConnection ws(sp.server.get(), "", {});
    http::WsCloseInfo ended;
    std::thread t([&] { ended = ws.run(nullptr); });
    sp.send(http::encode_ws_frame(WsOpcode::text, "unmasked"));
    FrameReader r;
    auto c = r.next(sp.client.get());
    REQUIRE(c.has_value());
    CHECK(c->opcode == WsOpcode::close);
    CHECK(http::parse_ws_close(c->payload).code == 1002);
    CHECK(http::parse_ws_close(c->payload).reason.find("masked") != std::string::npos);
    t.join();
    CHECK(ended.code == 1002);
  }
  {
    SocketPair sp;
    http::WebSocketConnection ws(sp.server.get(), "", {});
    http::WsCloseInfo ended;
    std::thread t([&] { ended = ws.run(nullptr); });
    sp.client.reset();
    t.join();
    CHECK(ended.code == http::ws_close::kAbnormal);
  }
}

TEST_CASE("connection: a silent client is pinged, then closed with 1001 at the idle timeout; stopping closes too") {
  {
    SocketPair sp;
    http::WebSocketConnection::Options o;
    o.ping_interval = 100ms;
    o.idle_timeout = 400ms;
    o.close_timeout = 200ms;
    http::WebSocketConnection ws(sp.server.get(), "", o);
    http::WsCloseInfo ended;
    const auto start = std::chrono::steady_clock::now();
    std::thread t([&] { ended = ws.run(nullptr); });
    FrameReader r;
    auto ping = r.next(sp.client.get());
    REQUIRE(ping.has_value());
    CHECK(ping->opcode == WsOpcode::ping);
    std::optional<WsMessage> last;
    while (auto m = r.next(sp.client.get(), 2000ms)) {
      last = m;
      if (m->opcode == WsOpcode::close) break;
    }
    REQUIRE(last.has_value());
    CHECK(last->opcode == WsOpcode::close);
    CHECK(http::parse_ws_close(last->payload).code == 1001);
    t.join();
    CHECK(ended.code == 1001);
    CHECK(std::chrono::steady_clock::now() - start < 3s);
  }
  {
    SocketPair sp;
    std::atomic<bool> stopping{false};
    http::WebSocketConnection::Options o;
    o.stopping = &stopping;
    o.close_timeout = 100ms;
    http::WebSocketConnection ws(sp.server.get(), "", o);
    http::WsCloseInfo ended;
    std::thread t([&] { ended = ws.run(nullptr); });
    stopping = true;
    t.join();
    CHECK(ended.code == 1001);
    CHECK(ended.reason == "server stopping");
  }
}

TEST_CASE("connection: sends from many threads arrive as whole frames") {
  SocketPair sp;
  http::WebSocketConnection ws(sp.server.get(), "", {});
  std::thread loop([&] { ws.run(nullptr); });
  std::vector<std::thread> senders;
  for (int i = 0; i < 4; ++i) {
    senders.emplace_back([&ws, i] {
      for (int k = 0; k < 50; ++k) CHECK(ws.send_binary(std::string(1000 + i, static_cast<char>('a' + i))));
    });
  }
  FrameReader r;
  int count[4] = {0, 0, 0, 0};
  for (int n = 0; n < 200; ++n) {
    auto m = r.next(sp.client.get());
    REQUIRE(m.has_value());
    const int i = m->payload[0] - 'a';
    REQUIRE(i >= 0);
    REQUIRE(i < 4);
    CHECK(m->payload == std::string(1000 + i, static_cast<char>('a' + i)));
    ++count[i];
  }
  for (auto& s : senders) s.join();
  for (const int c : count) CHECK(c == 50);
  ws.close(1000, "");
  sp.send(masked(WsOpcode::close, ""));
  loop.join();
}
