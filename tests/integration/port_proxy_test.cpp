// execd's /proxy/{port}: real servers started through execd's own /command (python3's
// http.server, a small echo/stream server, a python3 websockets echo server), reached
// through the real build/execd with a real HTTP and WebSocket client; nothing mocked.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <string>
#include <thread>

#include <doctest/doctest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <openssl/sha.h>

#include "support/daemon_process.hpp"
#include "support/http_checks.hpp"
#include "support/proc_probe.hpp"
#include "support/temp_dir.hpp"

using namespace execd::test;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kToken = "proxy-test-token-5f2c";

httplib::Headers auth(httplib::Headers extra = {}) {
  extra.emplace("X-EXECD-ACCESS-TOKEN", kToken);
  return extra;
}

std::string script(const std::string& name) {
  const char* dir = std::getenv("PROXY_TEST_DIR");
  REQUIRE_MESSAGE(dir != nullptr, "PROXY_TEST_DIR is not set (run through meson test)");
  return std::string(dir) + "/" + name;
}

std::string sha256_hex(const std::string& data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (const unsigned char b : digest) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

// A server started in the background through execd's /command; its output read back
// through /command/{id}/logs. Killed through DELETE /command when the test ends.
struct BackgroundServer {
  const DaemonProcess& execd;
  std::string id;
  BackgroundServer(const DaemonProcess& d, const std::string& command) : execd(d) {
    auto r = d.client()->Post("/command", auth(), nlohmann::json{{"command", command}, {"background", true}}.dump(),
                              "application/json");
    REQUIRE(r);
    INFO(r->body);
    REQUIRE(r->status == 200);
    // The background answer is an SSE stream whose init event names the command.
    std::smatch m;
    REQUIRE(std::regex_search(r->body, m, std::regex(R"re("text":"([0-9a-f-]+)")re")));
    id = m[1];
  }
  // The whole output so far.
  std::string logs() const {
    auto r = execd.client()->Get(("/command/" + id + "/logs?cursor=0").c_str(), auth());
    return r && r->status == 200 ? r->body : std::string();
  }
  // The port a WebSocket server printed ("port N") once it listens.
  std::string announced_port() const {
    std::smatch m;
    std::string out;
    REQUIRE_MESSAGE(within(std::chrono::seconds(20),
                           [&] {
                             out = logs();
                             return std::regex_search(out, m, std::regex(R"(port (\d+))"));
                           },
                           std::chrono::milliseconds(100)),
                    "the websockets server did not start: " << out);
    return m[1].str();
  }
  ~BackgroundServer() { execd.client()->Delete(("/command?id=" + id).c_str(), auth()); }
};

// Waits until `path` through the proxy answers something other than a 502 (the server
// is listening), at most 20 s.
bool wait_reachable(const DaemonProcess& d, const std::string& path) {
  return within(std::chrono::seconds(20), [&] {
    auto r = d.client()->Get(path.c_str(), auth());
    return r && r->status != 502;
  }, std::chrono::milliseconds(100));
}

std::unique_ptr<DaemonProcess> start_execd() {
  return std::make_unique<DaemonProcess>(std::vector<std::string>{"--access-token", kToken});
}

}  // namespace

TEST_CASE("port proxy: python3 -m http.server started through /command, listing and a file") {
  TempDir dir;
  {
    std::ofstream(dir.str() + "/hello.txt") << "hello from inside\n";
    std::ofstream big(dir.str() + "/big.bin", std::ios::binary);
    for (int i = 0; i < 3 * 1024 * 1024; ++i) big.put(static_cast<char>((i * 131) & 0xff));
  }
  auto execd = start_execd();
  const int port = execd::test::unused_loopback_port();
  BackgroundServer server(*execd, "/usr/bin/python3 -m http.server " + std::to_string(port) + " --bind 127.0.0.1 --directory " +
                                      dir.str());
  const std::string base = "/proxy/" + std::to_string(port);
  REQUIRE_MESSAGE(wait_reachable(*execd, base + "/"), "http.server did not come up: " << server.logs());
  auto c = execd->client();

  auto listing = c->Get((base + "/").c_str(), auth());
  REQUIRE(listing);
  CHECK(listing->status == 200);
  CHECK(listing->get_header_value("Content-Type").find("text/html") == 0);
  CHECK(listing->body.find("Directory listing") != std::string::npos);
  CHECK(listing->body.find("hello.txt") != std::string::npos);

  // "/proxy/{port}" alone is the upstream's "/" (http.server redirects nothing for "/").
  auto bare = c->Get(base.c_str(), auth());
  REQUIRE(bare);
  CHECK(bare->status == 200);
  CHECK(bare->body.find("hello.txt") != std::string::npos);

  auto file = c->Get((base + "/hello.txt").c_str(), auth());
  REQUIRE(file);
  CHECK(file->status == 200);
  CHECK(file->body == "hello from inside\n");

  // A query goes on as sent; HEAD works; a missing file is the upstream's own 404.
  auto query = c->Get((base + "/hello.txt?x=1&y=%20").c_str(), auth());
  REQUIRE(query);
  CHECK(query->body == "hello from inside\n");
  auto head = c->Head((base + "/big.bin").c_str(), auth());
  REQUIRE(head);
  CHECK(head->status == 200);
  CHECK(head->get_header_value("Content-Length") == std::to_string(3 * 1024 * 1024));
  auto missing = c->Get((base + "/nope.txt").c_str(), auth());
  REQUIRE(missing);
  CHECK(missing->status == 404);

  auto big = c->Get((base + "/big.bin").c_str(), auth());
  REQUIRE(big);
  CHECK(big->status == 200);
  REQUIRE(big->body.size() == 3u * 1024 * 1024);
  bool same = true;
  for (size_t i = 0; i < big->body.size() && same; ++i) same = big->body[i] == static_cast<char>((i * 131) & 0xff);
  CHECK(same);

  // The token is still wanted: without it, execd's own 401 (the upstream is not asked).
  auto denied = c->Get((base + "/hello.txt").c_str());
  check_error(denied, 401, "UNAUTHORIZED", "X-EXECD-ACCESS-TOKEN");
}

TEST_CASE("port proxy: the access token never reaches the upstream; prefix and forwarding headers do") {
  auto execd = start_execd();
  const int port = execd::test::unused_loopback_port();
  BackgroundServer server(*execd, "/usr/bin/python3 " + script("port_proxy_upstream.py") + " " + std::to_string(port));
  const std::string base = "/proxy/" + std::to_string(port);
  REQUIRE_MESSAGE(wait_reachable(*execd, base + "/headers"), "upstream did not come up: " << server.logs());

  auto r = execd->client()->Get((base + "/headers?q=1").c_str(),
                                auth({{"X-Custom", "kept"},
                                      {"Sec-WebSocket-Protocol", std::string("chat, execd, execd.token.") + kToken}}));
  REQUIRE(r);
  REQUIRE(r->status == 200);
  const auto j = nlohmann::json::parse(r->body, nullptr, false);
  REQUIRE(j.is_object());
  INFO(j.dump(2));
  CHECK(j["target"] == "/headers?q=1");
  const auto& h = j["headers"];
  CHECK(h.value("X-Custom", "") == "kept");
  CHECK(h.value("X-Forwarded-Prefix", "") == base);
  CHECK(h.value("X-Forwarded-For", "") == "127.0.0.1");
  // The token, as a header or as a subprotocol, is nowhere in what the upstream saw.
  CHECK(r->body.find(kToken) == std::string::npos);
  CHECK_FALSE(h.contains("X-EXECD-ACCESS-TOKEN"));
  CHECK(h.value("Sec-WebSocket-Protocol", "") == "chat");

  // Only execd's pair offered: the header goes away altogether.
  r = execd->client()->Get((base + "/headers").c_str(),
                           auth({{"Sec-WebSocket-Protocol", std::string("execd, execd.token.") + kToken}}));
  REQUIRE(r);
  CHECK(r->body.find(kToken) == std::string::npos);
  CHECK_FALSE(nlohmann::json::parse(r->body)["headers"].contains("Sec-WebSocket-Protocol"));
}

TEST_CASE("port proxy: a few MB POSTed and echoed, chunked both ways, a streamed response unbuffered") {
  auto execd = start_execd();
  const int port = execd::test::unused_loopback_port();
  BackgroundServer server(*execd, "/usr/bin/python3 " + script("port_proxy_upstream.py") + " " + std::to_string(port));
  const std::string base = "/proxy/" + std::to_string(port);
  REQUIRE_MESSAGE(wait_reachable(*execd, base + "/headers"), "upstream did not come up: " << server.logs());
  auto c = execd->client();

  std::string body(5 * 1024 * 1024, '\0');
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>((i * 2654435761u) >> 11);
  auto r = c->Post((base + "/echo").c_str(), auth(), body, "application/octet-stream");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->get_header_value("X-Body-Sha256") == sha256_hex(body));
  CHECK(r->body.size() == body.size());
  CHECK(r->body == body);

  // A chunked request body (no length known up front) reaches the upstream whole.
  size_t sent = 0;
  const std::string piece(100000, 'z');
  r = c->Post(
      (base + "/echo").c_str(), auth(),
      [&](size_t, httplib::DataSink& sink) {
        if (sent++ < 20) {
          sink.write(piece.data(), piece.size());
        } else {
          sink.done();
        }
        return true;
      },
      "application/octet-stream");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body.size() == 20 * piece.size());
  CHECK(r->get_header_value("X-Body-Sha256") == sha256_hex(std::string(20 * piece.size(), 'z')));

  // The upstream writes "one", waits 1.5 s, writes "two": the first piece comes through
  // at once, not when the response ends.
  const auto start = Clock::now();
  std::chrono::milliseconds first_at{-1};
  std::string got;
  auto streamed = c->Get((base + "/stream").c_str(), auth(), [&](const char* data, size_t len) {
    if (got.empty()) first_at = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    got.append(data, len);
    return true;
  });
  const auto total = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  REQUIRE(streamed);
  CHECK(streamed->status == 200);
  CHECK(got == "one\ntwo\n");
  MESSAGE("first chunk after " << first_at.count() << " ms, whole response after " << total.count() << " ms");
  CHECK(first_at.count() >= 0);
  CHECK(first_at.count() < 1000);
  CHECK(total.count() >= 1500);
}

TEST_CASE("port proxy: a real WebSocket client and echo server through /proxy/{port}") {
  auto execd = start_execd();
  BackgroundServer server(*execd, "/usr/bin/python3 " + script("ws_echo.py") + " server");
  const std::string port = server.announced_port();
  const std::string url = "ws://127.0.0.1:" + std::to_string(execd->port()) + "/proxy/" + port + "/chat";
  const std::string client = "/usr/bin/python3 " + script("ws_echo.py") + " client " + url;
  // Text, binary and a 1 MiB message, each echoed.
  CHECK(shell_output("WS_HEADERS='X-EXECD-ACCESS-TOKEN: " + std::string(kToken) + "' timeout 60 " + client +
                     " 2>&1") == "ok 5\n");
  // Without the token the upgrade is refused by execd.
  const std::string refused = shell_output("timeout 60 " + client + " 2>&1; echo exit=$?");
  CHECK(refused.find("401") != std::string::npos);
  CHECK(refused.find("exit=0") == std::string::npos);
  // The daemon is fine afterwards, its taken-over connections closed.
  auto r = execd->client()->Get("/ping", auth());
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(within(std::chrono::seconds(5), [&] { return fd_count(execd->pid()) < 40; }));
}

TEST_CASE("port proxy: refusals are JSON naming why; a dead port is a 502") {
  auto execd = start_execd();
  auto c = execd->client();
  const int dead = execd::test::unused_loopback_port();
  check_error(c->Get(("/proxy/" + std::to_string(dead) + "/x").c_str(), auth()), 502, "BAD_GATEWAY",
              "127.0.0.1:" + std::to_string(dead));
  check_error(c->Post(("/proxy/" + std::to_string(dead) + "/x").c_str(), auth(), std::string(200000, 'b'), "text/plain"),
              502, "BAD_GATEWAY", "connect");
  // The daemon's own port: it would proxy to itself.
  const std::string own = "/proxy/" + std::to_string(execd->port());
  check_error(c->Get((own + "/ping").c_str(), auth()), 403, "FORBIDDEN", "own port");
  check_error(c->Post((own + "/command").c_str(), auth(), R"({"command":"true"})", "application/json"), 403,
              "FORBIDDEN", "own port");
  for (const std::string bad : {"0", "65536", "99999999999", "abc", "80x", "-1", ""}) {
    INFO("port '" << bad << "'");
    check_error(c->Get(("/proxy/" + bad + "/").c_str(), auth()), 400, "INVALID_REQUEST_BODY", "1-65535");
  }
  // The counters moved (execd's Prometheus text).
  auto metrics = c->Get("/metrics?format=prometheus", auth());
  REQUIRE(metrics);
  std::smatch m;
  REQUIRE(std::regex_search(metrics->body, m, std::regex(R"(execd_port_proxy_upstream_failures_total (\d+))")));
  CHECK(std::stoi(m[1]) >= 2);
  CHECK(metrics->body.find("execd_port_proxy_requests_total") != std::string::npos);
}

TEST_CASE("port proxy: a WebSocket that authenticates with the token subprotocol reaches the upstream without it") {
  auto execd = start_execd();
  BackgroundServer server(*execd, "/usr/bin/python3 " + script("port_proxy_upstream.py") + " ws-server");
  const std::string port = server.announced_port();
  const std::string url = "ws://127.0.0.1:" + std::to_string(execd->port()) + "/proxy/" + port + "/sock";
  const std::string got = shell_output("timeout 60 /usr/bin/python3 " + script("port_proxy_upstream.py") +
                                       " ws-client " + url + " " + kToken + " 2>&1");
  INFO(got);
  // The handshake passed execd's check (the token as a subprotocol), and what the
  // upstream saw of it carried neither the token nor execd's own protocol name.
  CHECK(got.find("echo ok") != std::string::npos);
  const auto first = nlohmann::json::parse(got.substr(0, got.find('\n')), nullptr, false);
  REQUIRE(first.is_object());
  CHECK(first["protocols"] == nlohmann::json::array());
  CHECK(first["token_header"].is_null());
  CHECK(got.find(kToken) == std::string::npos);
  // A wrong token in the subprotocol is refused by execd.
  const std::string refused = shell_output("timeout 60 /usr/bin/python3 " + script("port_proxy_upstream.py") +
                                           " ws-client " + url + " wrong-token 2>&1; echo exit=$?");
  CHECK(refused.find("401") != std::string::npos);
  CHECK(refused.find("echo ok") == std::string::npos);
}
