// One hostile request against the real daemon: each is answered at once with a JSON
// error (or served), the connection closes when its framing cannot be trusted, and the
// daemon keeps answering /ping with its memory intact.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "support/daemon_process.hpp"
#include "support/http_checks.hpp"
#include "support/temp_dir.hpp"

using execd::test::check_error;
using execd::test::DaemonProcess;
using execd::test::TempDir;
using nlohmann::json;
using namespace std::chrono_literals;
using namespace std::string_literals;
using Clock = std::chrono::steady_clock;

namespace {

// A raw connection: what a hostile client can send that httplib's client cannot.
class Raw {
 public:
  explicit Raw(int port) : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  }
  ~Raw() { close(fd_); }
  Raw(const Raw&) = delete;
  Raw& operator=(const Raw&) = delete;

  /// False once the peer stopped taking bytes.
  bool send(const std::string& s) const {
    size_t off = 0;
    while (off < s.size()) {
      const ssize_t n = ::send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }
  /// True when bytes (or the end) can be read right now.
  [[nodiscard]] bool readable(std::chrono::milliseconds wait = 0ms) const {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(wait.count())) > 0;
  }
  /// Everything until the peer closes, or until `limit` passes.
  std::string read_all(std::chrono::milliseconds limit = 5000ms) {
    std::string out;
    const auto deadline = Clock::now() + limit;
    char buf[65536];
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) {
        timed_out_ = true;
        return out;
      }
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return out;  // closed (or reset)
      out.append(buf, static_cast<size_t>(n));
    }
  }
  [[nodiscard]] bool timed_out() const { return timed_out_; }

 private:
  int fd_;
  bool timed_out_ = false;
};

int status_of(const std::string& response) {
  if (response.rfind("HTTP/1.1 ", 0) != 0 || response.size() < 12) return 0;
  return std::stoi(response.substr(9, 3));
}

std::string body_of(const std::string& response) {
  const auto p = response.find("\r\n\r\n");
  return p == std::string::npos ? "" : response.substr(p + 4);
}

size_t count_responses(const std::string& all) {
  size_t n = 0;
  for (size_t p = all.find("HTTP/1.1 "); p != std::string::npos; p = all.find("HTTP/1.1 ", p + 1)) ++n;
  return n;
}

// Sends `request`, reads until the daemon closes; checks one JSON error of `status`,
// answered well within the read timeout, and the connection closed.
void expect_refused(int port, const std::string& request, int status, const std::string& needle = "") {
  CAPTURE(request.substr(0, 120));
  Raw raw(port);
  const auto start = Clock::now();
  raw.send(request);
  const auto response = raw.read_all(5000ms);
  CHECK_FALSE(raw.timed_out());  // closed, not kept waiting
  CHECK(Clock::now() - start < 3s);
  CHECK(status_of(response) == status);
  CHECK(response.find("Connection: close") != std::string::npos);
  const auto body = json::parse(body_of(response), nullptr, false);
  REQUIRE(body.is_object());
  CHECK(body.contains("code"));
  CHECK(body["message"].get<std::string>().find(needle) != std::string::npos);
}

void expect_alive(const DaemonProcess& d) {
  auto r = d.client()->Get("/ping");
  REQUIRE(r);
  CHECK(r->status == 200);
}

std::string deep_json(size_t levels) { return std::string(levels, '[') + std::string(levels, ']'); }

std::string command_body(size_t padding) {
  return json{{"command", "echo ok"}, {"padding", std::string(padding, 'x')}}.dump();
}

}  // namespace

TEST_CASE("a body nested 300,000 levels deep is a 400 and the daemon lives") {
  DaemonProcess d;
  const auto deep = deep_json(300000);
  check_error(d.client()->Post("/command", deep, "application/json"), 400, "INVALID_REQUEST_BODY", "deeper than 256");
  check_error(d.client()->Post("/code", deep, "application/json"), 400, "INVALID_REQUEST_BODY", "deeper than 256");
  check_error(d.client()->Post("/session", deep, "application/json"), 400, "INVALID_REQUEST_BODY", "deeper than 256");
  check_error(d.client()->Post("/files/mv", "{\"a\":" + deep + "}", "application/json"), 400, "INVALID_REQUEST_BODY",
              "deeper than 256");
  expect_alive(d);
}

TEST_CASE("a Content-Length over --max-request-bytes is 413 before the body is sent") {
  DaemonProcess d;
  Raw raw(d.port());
  const auto start = Clock::now();
  raw.send("POST /command HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n");
  const auto response = raw.read_all(5000ms);
  CHECK(Clock::now() - start < 2s);
  CHECK(status_of(response) == 413);
  CHECK(json::parse(body_of(response))["code"] == "TOO_LARGE");
  CHECK(body_of(response).find("--max-request-bytes") != std::string::npos);
  expect_alive(d);

  // With "Expect: 100-continue" (curl's habit for big bodies) the 413 comes instead of a 100.
  Raw expecting(d.port());
  expecting.send("POST /command HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\nExpect: 100-continue\r\n\r\n");
  const auto no_continue = expecting.read_all(5000ms);
  CHECK(status_of(no_continue) == 413);
  CHECK(count_responses(no_continue) == 1);

  // The cap is the flag's.
  DaemonProcess small({"--max-request-bytes", "2KiB"});
  check_error(small.client()->Post("/command", command_body(4096), "application/json"), 413, "TOO_LARGE", "2048");
  auto fits = small.client()->Post("/command", R"({"command":"true"})", "application/json");
  REQUIRE(fits);
  CHECK(fits->status == 200);
}

TEST_CASE("a 100 MB chunked body is cut off at the cap with 413 and costs no 100 MB") {
  DaemonProcess d;
  expect_alive(d);
  const long before = d.rss_kib();
  Raw raw(d.port());
  REQUIRE(raw.send("POST /command HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n"));
  const std::string chunk = "10000\r\n" + std::string(0x10000, ' ') + "\r\n";
  size_t sent = 0;
  while (sent < (100u << 20) && !raw.readable() && raw.send(chunk)) sent += 0x10000;
  const auto response = raw.read_all(5000ms);
  CHECK(sent < (20u << 20));  // the answer came at the cap, not after the whole body
  CHECK(status_of(response) == 413);
  const long after = d.rss_kib();
  CAPTURE(before);
  CAPTURE(after);
  CHECK(after - before < 40 * 1024);
  expect_alive(d);
}

TEST_CASE("uploads keep streaming past the JSON cap") {
  TempDir dir;
  DaemonProcess d({"--max-request-bytes", "4KiB"});
  const std::string content(5 << 20, 'u');
  httplib::MultipartFormDataItems items{
      {"metadata", json{{"path", (dir.path() / "big.bin").string()}}.dump(), "metadata", "application/json"},
      {"file", content, "blob", "application/octet-stream"}};
  auto r = d.client()->Post("/files/upload", items);
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(std::filesystem::file_size(dir.path() / "big.bin") == content.size());
}

TEST_CASE("a JSON route takes its body whatever the Content-Type says, past httplib's 8 KB form cap") {
  DaemonProcess d;
  const auto body = command_body(20000);
  for (const char* type : {"application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x"}) {
    CAPTURE(type);
    auto r = d.client()->Post("/command", body, type);
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body.find("ok") != std::string::npos);
  }
  expect_alive(d);
}

TEST_CASE("10,000 headers are a 431 and the connection is closed") {
  DaemonProcess d;
  std::string many = "GET /ping HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 10000; ++i) many += "X-H" + std::to_string(i) + ": v\r\n";
  expect_refused(d.port(), many + "\r\n", 431, "exceed 65536 bytes");
  std::string hundred_one = "GET /ping HTTP/1.1\r\n";
  for (int i = 0; i < 101; ++i) hundred_one += "X-H" + std::to_string(i) + ": v\r\n";
  expect_refused(d.port(), hundred_one + "\r\n", 431, "more than 100 request headers");
  expect_alive(d);

  DaemonProcess few({"--max-header-count", "8", "--max-header-bytes", "2KiB"});
  expect_refused(few.port(), "GET /ping HTTP/1.1\r\nX-Big: " + std::string(3000, 'b') + "\r\n\r\n", 431, "2048");
  std::string nine = "GET /ping HTTP/1.1\r\n";
  for (int i = 0; i < 9; ++i) nine += "X-H" + std::to_string(i) + ": v\r\n";
  expect_refused(few.port(), nine + "\r\n", 431, "more than 8");
  expect_alive(few);
}

TEST_CASE("malformed framing is answered at once and the connection closed") {
  DaemonProcess d;
  const std::string post = "POST /command HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";
  expect_refused(d.port(), post + "Content-Length: 5\r\nContent-Length: 60\r\n\r\n{}", 400, "differ");
  expect_refused(d.port(), post + "Content-Length: -1\r\n\r\n", 400, "Content-Length");
  expect_refused(d.port(), post + "Content-Length: abc\r\n\r\n", 400, "Content-Length");
  expect_refused(d.port(), post + "Content-Length: 99999999999999999999999\r\n\r\n", 400, "Content-Length");
  expect_refused(d.port(), post + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "together");
  expect_refused(d.port(), post + "Transfer-Encoding: gzip\r\n\r\n", 501, "gzip");
  expect_refused(d.port(), post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n", 400,
                 "Transfer-Encoding");
  expect_alive(d);
}

TEST_CASE("other hostile heads: long target, no colon, NUL, folding, bare LF, unknown method, Range") {
  DaemonProcess d;
  expect_refused(d.port(), "GET /" + std::string(1 << 20, 'a') + " HTTP/1.1\r\n\r\n", 431);
  expect_refused(d.port(), "GET /ping?" + std::string(20000, 'a') + " HTTP/1.1\r\n\r\n", 414);
  std::string params = "GET /ping?";
  for (int i = 0; i < 100000; ++i) params += "a=&";
  expect_refused(d.port(), params + " HTTP/1.1\r\n\r\n", 431);
  expect_refused(d.port(), "GET /ping HTTP/1.1\r\nNoColon\r\n\r\n", 400, "colon");
  expect_refused(d.port(), "GET /ping HTTP/1.1\r\nX-A: a\0b\r\n\r\n"s, 400, "NUL");
  expect_refused(d.port(), "GET /ping HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n", 400, "fold");
  expect_refused(d.port(), "GET /ping HTTP/1.1\nHost: x\n\n\r\n\r\n", 400, "bare LF");
  expect_refused(d.port(), "PRI /ping HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n", 501, "PRI");
  // httplib parses Range with a recursive std::regex before any route runs.
  auto ranges = [](int n) {
    std::string r = "bytes=0-0";
    for (int i = 0; i < n; ++i) r += "," + std::to_string(2 * i + 2) + "-" + std::to_string(2 * i + 2);
    return "GET /files/download?path=/etc/hostname HTTP/1.1\r\nRange: " + r + "\r\n\r\n";
  };
  expect_refused(d.port(), ranges(10000), 431);
  expect_refused(d.port(), ranges(1000), 416, "Range");
  expect_refused(d.port(), ranges(5000), 416, "Range");  // 44 KB: that regex overflowed the thread's stack
  expect_alive(d);
}

TEST_CASE("a body no route reads is never read as the next request") {
  DaemonProcess d({"--access-token", "t"});
  const std::string smuggled = "GET /ping HTTP/1.1\r\nX-EXECD-ACCESS-TOKEN: t\r\n\r\n";
  const auto cl = std::to_string(smuggled.size());
  auto run = [&](const std::string& head) {
    Raw raw(d.port());
    raw.send(head + smuggled);
    const auto all = raw.read_all(5000ms);
    CHECK_FALSE(raw.timed_out());
    CHECK(count_responses(all) == 1);
    return all;
  };
  // GET with a body: httplib does not read it.
  CHECK(status_of(run("GET /ping HTTP/1.1\r\nX-EXECD-ACCESS-TOKEN: t\r\nContent-Length: " + cl + "\r\n\r\n")) == 200);
  // 401 before the body is read.
  CHECK(status_of(run("POST /command HTTP/1.1\r\nContent-Length: " + cl + "\r\n\r\n")) == 401);
  // No route: 404/405 without reading the body.
  CHECK(status_of(run("POST /no/such HTTP/1.1\r\nX-EXECD-ACCESS-TOKEN: t\r\nContent-Length: " + cl + "\r\n\r\n")) ==
        404);
  CHECK(status_of(run("POST /ping HTTP/1.1\r\nX-EXECD-ACCESS-TOKEN: t\r\nContent-Length: " + cl + "\r\n\r\n")) == 405);
  auto ok = d.client()->Get("/ping", {{"X-EXECD-ACCESS-TOKEN", "t"}});
  REQUIRE(ok);
  CHECK(ok->status == 200);
}

TEST_CASE("a POST without Content-Length has an empty body, answered at once") {
  DaemonProcess d;
  Raw raw(d.port());
  const auto start = Clock::now();
  raw.send("POST /session HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  const auto response = raw.read_all(5000ms);
  CHECK(Clock::now() - start < 2s);
  CHECK(status_of(response) == 200);
  // Kept alive, the next request is served on the same connection.
  Raw again(d.port());
  again.send("POST /session HTTP/1.1\r\nHost: x\r\n\r\nGET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  const auto both = again.read_all(5000ms);
  CHECK(count_responses(both) == 2);
}

TEST_CASE("slow and endless bodies are cut off") {
  DaemonProcess d({"--http-read-timeout", "2s"});
  {
    // A byte a second never ends a 100-byte JSON body: the whole body must arrive within
    // the read timeout.
    Raw raw(d.port());
    raw.send("POST /command HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{");
    const auto start = Clock::now();
    while (Clock::now() - start < 8s && !raw.readable(900ms)) raw.send(" ");
    CHECK(Clock::now() - start < 5s);
    const auto response = raw.read_all(3000ms);
    CHECK(status_of(response) == 400);
  }
  {
    // A chunk-size line that never ends: httplib would grow it for ever.
    Raw raw(d.port());
    raw.send("POST /command HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    const long before = d.rss_kib();
    const std::string zeros(65536, '0');
    size_t sent = 0;
    while (sent < (64u << 20) && !raw.readable() && raw.send(zeros)) sent += zeros.size();
    CHECK(sent < (8u << 20));
    raw.read_all(3000ms);
    CHECK(d.rss_kib() - before < 20 * 1024);
  }
  expect_alive(d);
}
