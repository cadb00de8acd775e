// http::ReverseProxy end to end: a proxy process (proxy_front, an HttpServer with the
// proxy's routes) in front of the real build/execd, a real python3 WebSocket server and a
// small header-echo server; nothing mocked. Also the Prometheus text of execd's
// /metrics?format=prometheus, parsed back line by line.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <chrono>
#include <cstdlib>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

#include <doctest/doctest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "support/daemon_process.hpp"
#include "support/http_checks.hpp"
#include "support/proc_probe.hpp"
#include "support/sse_reader.hpp"
#include "support/temp_dir.hpp"

using namespace execd::test;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kApiKey = "front-key";
constexpr const char* kToken = "s3cret-upstream";

// The proxy process: DaemonProcess starts $EXECD_BIN, so it is pointed at proxy_front
// while the front starts.
std::unique_ptr<DaemonProcess> start_front() {
  const char* front = std::getenv("PROXY_FRONT_BIN");
  REQUIRE_MESSAGE(front != nullptr, "PROXY_FRONT_BIN is not set (run through meson test)");
  const std::string execd = std::getenv("EXECD_BIN");
  setenv("EXECD_BIN", front, 1);
  std::unique_ptr<DaemonProcess> d;
  try {
    d = std::make_unique<DaemonProcess>(std::vector<std::string>{"--api-key", kApiKey, "--upstream-token", kToken});
  } catch (...) {
    setenv("EXECD_BIN", execd.c_str(), 1);
    throw;
  }
  setenv("EXECD_BIN", execd.c_str(), 1);
  return d;
}

std::unique_ptr<DaemonProcess> start_execd() {
  return std::make_unique<DaemonProcess>(std::vector<std::string>{"--access-token", kToken});
}

httplib::Headers key(httplib::Headers extra = {}) {
  extra.emplace("OPEN-SANDBOX-API-KEY", kApiKey);
  return extra;
}

std::string via(int upstream_port, const std::string& path) { return "/p/" + std::to_string(upstream_port) + path; }

// A child process whose stdout we read (python3 servers and clients).
struct Child {
  pid_t pid = -1;
  int out = -1;
  Child(std::vector<std::string> args, std::vector<std::string> env_extra = {}) {
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::dup2(p[1], 1);
      for (const auto& e : env_extra) ::putenv(const_cast<char*>(e.c_str()));
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execvp(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(p[1]);
    out = p[0];
  }
  // One line of stdout within `limit`; empty on timeout or end.
  std::string line(std::chrono::milliseconds limit) {
    std::string got;
    const auto deadline = Clock::now() + limit;
    while (Clock::now() < deadline) {
      pollfd pfd{out, POLLIN, 0};
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (::poll(&pfd, 1, static_cast<int>(std::max<long>(left, 1))) <= 0) continue;
      char c;
      if (::read(out, &c, 1) != 1) break;
      if (c == '\n') return got;
      got += c;
    }
    return got;
  }
  // Exit status within `limit`, or -1 (then killed).
  int wait(std::chrono::milliseconds limit) {
    const auto deadline = Clock::now() + limit;
    while (Clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        return status;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }
  ~Child() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    if (out >= 0) ::close(out);
  }
};

std::string script(const std::string& name) {
  const char* dir = std::getenv("PROXY_TEST_DIR");
  REQUIRE_MESSAGE(dir != nullptr, "PROXY_TEST_DIR is not set (run through meson test)");
  return std::string(dir) + "/" + name;
}

// A small in-process upstream that answers with what it received.
struct HeaderEcho {
  httplib::Server server;
  int port = 0;
  std::thread thread;
  HeaderEcho() {
    auto echo = [](const httplib::Request& req, httplib::Response& res) {
      nlohmann::json h = nlohmann::json::object();
      for (const auto& [k, v] : req.headers) h[k] = v;
      res.set_header("Keep-Alive", "timeout=99");
      res.set_header("X-Upstream", "yes");
      res.set_content(nlohmann::json{{"headers", h}, {"target", req.target}, {"method", req.method},
                                     {"body_size", req.body.size()}}
                          .dump(),
                      "application/json");
    };
    server.Get("/echo", echo);
    server.Post("/echo", echo);
    server.Put("/echo", echo);
    port = server.bind_to_any_port("127.0.0.1");
    thread = std::thread([this] { server.listen_after_bind(); });
  }
  ~HeaderEcho() {
    server.stop();
    if (thread.joinable()) thread.join();
  }
};

}  // namespace

TEST_CASE("proxy: execd /ping through the proxy, with the upstream token added and request ids") {
  auto execd = start_execd();
  auto front = start_front();
  auto c = front->client();

  // Without the proxy's token execd refuses: the proxy added it.
  auto direct = execd->client()->Get("/ping");
  REQUIRE(direct);
  CHECK(direct->status == 401);

  auto r = c->Get(via(execd->port(), "/ping").c_str(), key());
  REQUIRE(r);
  CHECK(r->status == 200);
  const std::string generated = r->get_header_value("X-Request-ID");
  CHECK(generated.size() == 36);  // a fresh UUID

  r = c->Get(via(execd->port(), "/ping").c_str(), key({{"X-Request-ID", "client-id-42"}}));
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->get_header_value("X-Request-ID") == "client-id-42");

  // An unusable id (too long) is replaced, not echoed.
  r = c->Get(via(execd->port(), "/ping").c_str(), key({{"X-Request-ID", std::string(200, 'a')}}));
  REQUIRE(r);
  CHECK(r->get_header_value("X-Request-ID").size() == 36);

  // The proxy's own 401 is JSON and carries an id too.
  r = c->Get(via(execd->port(), "/ping").c_str(), {{"X-Request-ID", "denied-1"}});
  check_error(r, 401, "UNAUTHORIZED", "OPEN-SANDBOX-API-KEY");
  CHECK(r->get_header_value("X-Request-ID") == "denied-1");

  // So is a 404 of no route.
  r = c->Get("/nothing-here", key());
  check_error(r, 404, "NOT_FOUND", "/nothing-here");
  CHECK(r->get_header_value("X-Request-ID").size() == 36);
}

TEST_CASE("proxy: headers forwarded, hop-by-hop and the client's key dropped, query kept as sent") {
  HeaderEcho upstream;
  auto front = start_front();
  auto c = front->client();
  auto r = c->Get(via(upstream.port, "/echo?a=1&b=%20x%2F").c_str(),
                  key({{"X-Request-ID", "trace-7"},
                       {"X-EXECD-ACCESS-TOKEN", "client-forged"},
                       {"Connection", "X-Hop"},
                       {"X-Hop", "secret"},
                       {"Keep-Alive", "timeout=5"},
                       {"Proxy-Authorization", "Basic Zm9v"},
                       {"X-Custom", "kept"},
                       {"X-Forwarded-For", "10.1.2.3"}}));
  REQUIRE(r);
  REQUIRE(r->status == 200);
  const auto j = nlohmann::json::parse(r->body);
  const auto& h = j["headers"];
  INFO(j.dump(2));
  CHECK(j["target"] == "/echo?a=1&b=%20x%2F");
  CHECK(h.value("X-Custom", "") == "kept");
  CHECK(h.value("X-Request-ID", "") == "trace-7");
  CHECK(h.value("X-EXECD-ACCESS-TOKEN", "") == kToken);
  CHECK(h.value("X-Forwarded-For", "") == "10.1.2.3, 127.0.0.1");
  CHECK(h.value("X-Forwarded-Proto", "") == "http");
  CHECK(h.value("X-Forwarded-Host", "").find("127.0.0.1:" + std::to_string(front->port())) == 0);
  CHECK_FALSE(h.contains("OPEN-SANDBOX-API-KEY"));
  CHECK_FALSE(h.contains("X-Hop"));
  CHECK_FALSE(h.contains("Keep-Alive"));
  CHECK_FALSE(h.contains("Proxy-Authorization"));
  // Response: the upstream's own headers kept, its hop-by-hop ones dropped.
  CHECK(r->get_header_value("X-Upstream") == "yes");
  CHECK(r->get_header_value("Keep-Alive") != "timeout=99");
  CHECK(r->get_header_value("X-Request-ID") == "trace-7");

  // The upstream connection was kept alive: the next GET reuses it (same client port
  // as the upstream saw it).
  auto again = c->Get(via(upstream.port, "/echo").c_str(), key());
  REQUIRE(again);
  CHECK(nlohmann::json::parse(again->body)["headers"].value("REMOTE_PORT", "") == h.value("REMOTE_PORT", "?"));

  // A chunked request body is forwarded chunked; a sized one with its length.
  std::string body(300000, 'q');
  r = c->Post(via(upstream.port, "/echo").c_str(), key(), body, "application/octet-stream");
  REQUIRE(r);
  CHECK(nlohmann::json::parse(r->body)["body_size"] == body.size());
  size_t sent = 0;
  r = c->Post(
      via(upstream.port, "/echo").c_str(), key(),
      [&](size_t, httplib::DataSink& sink) {
        if (sent < 5) {
          sink.write("12345", 5);
          ++sent;
        } else {
          sink.done();
        }
        return true;
      },
      "text/plain");
  REQUIRE(r);
  CHECK(nlohmann::json::parse(r->body)["body_size"] == 25);
  CHECK(nlohmann::json::parse(r->body)["headers"].value("Transfer-Encoding", "") == "chunked");

  // A kept connection the upstream closed while it sat idle is not used: the request goes
  // on a fresh one (which finds nobody listening now: a 502, not a hang or a stale error).
  upstream.server.stop();
  upstream.thread.join();
  auto stale = c->Get(via(upstream.port, "/echo").c_str(), key());
  REQUIRE(stale);
  check_error(stale, 502, "BAD_GATEWAY", "127.0.0.1:" + std::to_string(upstream.port));
}

TEST_CASE("proxy: a command's SSE arrives through the proxy event by event") {
  auto execd = start_execd();
  auto front = start_front();
  SseRequest req;
  req.method = "POST";
  req.path = via(execd->port(), "/command");
  req.body = R"({"command":"echo first; sleep 1.5; echo second"})";
  req.headers = key();
  const auto started = Clock::now();
  std::chrono::milliseconds first_at{-1};
  req.on_event = [&](const SseEvent& e) {
    if (e.type() == "stdout" && e.json.value("text", "") == "first") {
      first_at = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
    }
    return true;
  };
  const SseResponse res = sse_request(front->port(), req);
  const auto total = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  INFO(res.raw);
  CHECK(res.status == 200);
  CHECK(res.ended);
  CHECK(res.of_type("stdout").size() == 2);
  CHECK(res.of_type("execution_complete").size() == 1);
  MESSAGE("first event after " << first_at.count() << " ms, stream ended after " << total.count() << " ms");
  CHECK(first_at.count() >= 0);
  CHECK(first_at.count() < 1000);  // not held back until the command ends (1.5 s later)
  CHECK(total.count() >= 1500);
}

namespace {

char byte_at(size_t i) { return static_cast<char>((i * 2654435761u) >> 13); }

// A real upstream for bulk bytes: POST /sink reads a body and says how many bytes and how
// many were not the pattern; GET /source/N sends N pattern bytes (Content-Length).
struct ByteServer {
  httplib::Server server;
  int port = 0;
  std::thread thread;
  ByteServer() {
    server.Post("/sink", [](const httplib::Request&, httplib::Response& res, const httplib::ContentReader& reader) {
      size_t got = 0;
      size_t wrong = 0;
      reader([&](const char* data, size_t len) {
        for (size_t i = 0; i < len; ++i) wrong += data[i] != byte_at(got + i);
        got += len;
        return true;
      });
      res.set_content(nlohmann::json{{"got", got}, {"wrong", wrong}}.dump(), "application/json");
    });
    server.Get(R"(/source/(\d+))", [](const httplib::Request& req, httplib::Response& res) {
      const size_t n = std::stoull(req.matches[1]);
      res.set_content_provider(n, "application/octet-stream", [](size_t offset, size_t length, httplib::DataSink& sink) {
        std::string piece(std::min<size_t>(length, 256 * 1024), '\0');
        for (size_t i = 0; i < piece.size(); ++i) piece[i] = byte_at(offset + i);
        return sink.write(piece.data(), piece.size());
      });
    });
    port = server.bind_to_any_port("127.0.0.1");
    thread = std::thread([this] { server.listen_after_bind(); });
  }
  ~ByteServer() {
    server.stop();
    thread.join();
  }
};

}  // namespace

TEST_CASE("proxy: 100 MB up and down through the proxy with its RSS flat") {
  ByteServer upstream;
  auto front = start_front();
  constexpr size_t kSize = 100u << 20;
  auto c = front->client();
  const long rss_before = status_kib(front->pid(), "VmRSS");

  const auto up_start = Clock::now();
  auto sent = c->Post(
      via(upstream.port, "/sink").c_str(), key(), kSize,
      [&](size_t offset, size_t length, httplib::DataSink& sink) {
        std::string piece(std::min<size_t>(length, 256 * 1024), '\0');
        for (size_t i = 0; i < piece.size(); ++i) piece[i] = byte_at(offset + i);
        return sink.write(piece.data(), piece.size());
      },
      "application/octet-stream");
  const auto up_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - up_start).count();
  REQUIRE(sent);
  INFO(sent->body);
  REQUIRE(sent->status == 200);
  const auto j = nlohmann::json::parse(sent->body);
  CHECK(j["got"] == kSize);
  CHECK(j["wrong"] == 0);

  // Download, checked byte by byte as it streams.
  size_t got = 0;
  size_t wrong = 0;
  const auto down_start = Clock::now();
  auto downloaded = c->Get(via(upstream.port, "/source/" + std::to_string(kSize)).c_str(), key(),
                           [&](const char* data, size_t len) {
                             for (size_t i = 0; i < len; ++i) wrong += data[i] != byte_at(got + i);
                             got += len;
                             return true;
                           });
  const auto down_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - down_start).count();
  REQUIRE(downloaded);
  CHECK(downloaded->status == 200);
  CHECK(downloaded->get_header_value("Content-Length") == std::to_string(kSize));
  CHECK(got == kSize);
  CHECK(wrong == 0);
  const long peak = status_kib(front->pid(), "VmHWM");
  MESSAGE("proxy RSS before " << rss_before << " KiB, peak " << peak << " KiB; upload " << up_ms << " ms, download "
                              << down_ms << " ms");
  CHECK(peak - rss_before < 24 * 1024);  // 200 MB went through; a few buffers stayed
}

TEST_CASE("proxy: a big download from the real execd (a command's SSE) keeps the proxy's RSS flat") {
  auto execd = start_execd();
  auto front = start_front();
  const long rss_before = status_kib(front->pid(), "VmRSS");
  SseRequest req;
  req.method = "POST";
  req.path = via(execd->port(), "/command");
  // About 10 MB of stdout events.
  req.body = R"({"command":"head -c 7500000 /dev/zero | base64 -w 1000"})";
  req.headers = key();
  size_t lines = 0;
  req.on_event = [&](const SseEvent& e) {
    lines += e.type() == "stdout";
    return true;
  };
  const SseResponse res = sse_request(front->port(), req);
  CHECK(res.ended);
  CHECK(lines == 10000);
  CHECK(res.of_type("execution_complete").size() == 1);
  const long peak = status_kib(front->pid(), "VmHWM");
  MESSAGE("proxy RSS before " << rss_before << " KiB, peak " << peak << " KiB after " << res.raw.size() << " bytes");
  CHECK(peak - rss_before < 24 * 1024);
}

TEST_CASE("proxy: a real WebSocket client and server talk through the proxy") {
  Child server({"/usr/bin/python3", script("ws_echo.py"), "server"});
  const std::string first = server.line(std::chrono::seconds(15));
  REQUIRE_MESSAGE(first.rfind("port ", 0) == 0, "the python3 websockets server did not start: '" << first << "'");
  const int ws_port = std::stoi(first.substr(5));
  auto front = start_front();
  const std::string url = "ws://127.0.0.1:" + std::to_string(front->port()) + via(ws_port, "/chat");
  {
    Child client({"/usr/bin/python3", script("ws_echo.py"), "client", url},
                 {std::string("WS_HEADERS=OPEN-SANDBOX-API-KEY: ") + kApiKey});
    const std::string out = client.line(std::chrono::seconds(30));
    CHECK(out == "ok 5");
    CHECK(client.wait(std::chrono::seconds(10)) == 0);
  }
  // Without the key the upgrade is refused with the proxy's JSON 401.
  {
    Child client({"/usr/bin/python3", script("ws_echo.py"), "client", url});
    CHECK(client.wait(std::chrono::seconds(20)) != 0);
  }
  // The front still serves after relaying (its taken-over connections are closed).
  auto r = front->client()->Get(via(ws_port, "/"), key());
  REQUIRE(r);
  CHECK(r->status != 502);
  CHECK(within(std::chrono::seconds(5), [&] { return fd_count(front->pid()) < 20; }));
}

TEST_CASE("proxy: an upstream nobody listens on is a 502 naming it") {
  auto front = start_front();
  const int port = execd::test::unused_loopback_port();
  auto r = front->client()->Get(via(port, "/x").c_str(), key());
  check_error(r, 502, "BAD_GATEWAY", "127.0.0.1:" + std::to_string(port));
  r = front->client()->Post(via(port, "/x").c_str(), key(), std::string(100000, 'b'), "text/plain");
  check_error(r, 502, "BAD_GATEWAY", "connect");
}

TEST_CASE("proxy: an upstream killed mid-stream cuts the client's stream") {
  auto execd = start_execd();
  auto front = start_front();
  SseRequest req;
  req.method = "POST";
  req.path = via(execd->port(), "/command");
  req.body = R"({"command":"for i in $(seq 1 50); do echo $i; sleep 0.1; done"})";
  req.headers = key();
  int seen = 0;
  req.on_event = [&](const SseEvent& e) {
    if (e.type() == "stdout" && ++seen == 3) execd->stop(SIGKILL, std::chrono::seconds(5));
    return true;
  };
  const SseResponse res = sse_request(front->port(), req);
  INFO(res.raw);
  CHECK(res.status == 200);
  CHECK(seen >= 3);
  CHECK_FALSE(res.ended);  // no clean end of the chunked body
  CHECK(res.of_type("execution_complete").empty());
  // The front is still fine.
  auto r = front->client()->Get(via(execd::test::unused_loopback_port(), "/"), key());
  REQUIRE(r);
  CHECK(r->status == 502);
}

namespace {

// Every line of a text exposition: a HELP or TYPE comment, or a sample whose value parses.
std::map<std::string, double> parse_prometheus(const std::string& text) {
  static const std::regex kHelp(R"(# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*)");
  static const std::regex kType(R"(# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram|summary|untyped))");
  static const std::regex kSample(
      R"(([a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*\})?) (\S+))");
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    INFO("line: " << line);
    std::smatch m;
    if (line.rfind("# ", 0) == 0) {
      CHECK((std::regex_match(line, kHelp) || std::regex_match(line, kType)));
      continue;
    }
    REQUIRE(std::regex_match(line, m, kSample));
    const std::string v = m[4];
    REQUIRE_FALSE(v.empty());
    char* end = nullptr;
    const double value = v == "+Inf" ? HUGE_VAL : v == "NaN" ? 0 : std::strtod(v.c_str(), &end);
    if (v != "+Inf" && v != "NaN") CHECK(end == v.c_str() + v.size());
    out[m[1]] = value;
  }
  return out;
}

}  // namespace

TEST_CASE("execd /metrics?format=prometheus: valid text, counters move after commands") {
  DaemonProcess d;
  auto c = d.client();
  auto scrape = [&] {
    auto r = c->Get("/metrics?format=prometheus");
    REQUIRE(r);
    REQUIRE(r->status == 200);
    CHECK(r->get_header_value("Content-Type").find("text/plain; version=0.0.4") == 0);
    return parse_prometheus(r->body);
  };
  auto before = scrape();
  CHECK(before.count("execd_sse_bytes_total") == 1);
  CHECK(before.count("execd_sse_streams_open") == 1);
  CHECK(before.count("execd_kernel_starts_total") == 1);

  SseRequest ok;
  ok.method = "POST";
  ok.path = "/command";
  ok.body = R"({"command":"echo hi"})";
  CHECK(sse_request(d.port(), ok).of_type("execution_complete").size() == 1);
  SseRequest bad = ok;
  bad.body = R"({"command":"exit 3"})";
  CHECK(sse_request(d.port(), bad).of_type("error").size() == 1);
  SseRequest slow = ok;
  slow.body = R"({"command":"sleep 5","timeout":300})";
  CHECK(sse_request(d.port(), slow).of_type("error").size() == 1);

  std::map<std::string, double> after;
  // The terminal event is counted as the log closes, which may be just after the stream
  // ends; a stream is counted closed once its server thread has finished it, which may be
  // just after the client read its last event.
  CHECK(within(std::chrono::seconds(5), [&] {
    after = scrape();
    return after[R"(execd_execution_duration_seconds_count{kind="command"})"] >= 3 &&
           after["execd_sse_streams_open"] == 0;
  }));
  CHECK(after[R"(execd_executions_total{kind="command",outcome="success"})"] == 1);
  CHECK(after[R"(execd_executions_total{kind="command",outcome="failure"})"] == 1);
  CHECK(after[R"(execd_executions_total{kind="command",outcome="timeout"})"] == 1);
  CHECK(after[R"(execd_execution_duration_seconds_bucket{kind="command",le="+Inf"})"] == 3);
  CHECK(after["execd_sse_bytes_total"] > before["execd_sse_bytes_total"]);
  CHECK(after["execd_sse_streams_open"] == 0);

  // JSON stays the default; an unknown format is named.
  auto r = c->Get("/metrics");
  REQUIRE(r);
  CHECK(nlohmann::json::parse(r->body, nullptr, false).is_object());
  check_error(c->Get("/metrics?format=xml"), 400, "INVALID_REQUEST_BODY", "xml");
}
