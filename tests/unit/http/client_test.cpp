// http::send_request against real servers: httplib on loopback TCP, and a unix socket
// answered by hand (Docker's engine is spoken to that way).
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include <doctest/doctest.h>
#include <httplib.h>

#include "http/client.hpp"
#include "support/temp_dir.hpp"

using namespace execd;

namespace {

struct LoopbackServer {
  httplib::Server server;
  int port = 0;
  std::thread thread;
  LoopbackServer() {
    server.Get("/fixed", [](const httplib::Request&, httplib::Response& res) { res.set_content("hello", "text/plain"); });
    server.Post("/echo", [](const httplib::Request& req, httplib::Response& res) {
      res.status = 201;
      res.set_header("X-Seen-Token", req.get_header_value("X-Token"));
      res.set_content(req.body, "application/json");
    });
    server.Get("/chunked", [](const httplib::Request&, httplib::Response& res) {
      res.set_chunked_content_provider("text/plain", [](size_t offset, httplib::DataSink& sink) {
        if (offset < 3 * 5000) {
          const std::string part(5000, static_cast<char>('a' + offset / 5000));
          sink.write(part.data(), part.size());
        } else {
          sink.done();
        }
        return true;
      });
    });
    server.Get("/big", [](const httplib::Request&, httplib::Response& res) { res.set_content(std::string(100000, 'x'), "text/plain"); });
    server.Get("/slow", [](const httplib::Request&, httplib::Response& res) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));
      res.set_content("late", "text/plain");
    });
    port = server.bind_to_any_port("127.0.0.1");
    thread = std::thread([this] { server.listen_after_bind(); });
  }
  ~LoopbackServer() {
    server.stop();
    thread.join();
  }
  http::ClientEndpoint endpoint() const { return http::ClientEndpoint{"127.0.0.1", port, ""}; }
};

http::ClientRequest get(std::string target) {
  http::ClientRequest r;
  r.target = std::move(target);
  return r;
}

}  // namespace

TEST_CASE("send_request: Content-Length, chunked, request body and headers") {
  LoopbackServer s;
  auto fixed = http::send_request(s.endpoint(), get("/fixed"));
  REQUIRE(fixed.ok());
  CHECK(fixed->status == 200);
  CHECK(fixed->body == "hello");
  CHECK(fixed->header("content-type") == "text/plain");

  auto post = get("/echo");
  post.method = "POST";
  post.headers = {{"X-Token", "t0k"}, {"Content-Type", "application/json"}};
  post.body = R"({"a":1})";
  auto echoed = http::send_request(s.endpoint(), post);
  REQUIRE(echoed.ok());
  CHECK(echoed->status == 201);
  CHECK(echoed->body == R"({"a":1})");
  CHECK(echoed->header("X-Seen-Token") == "t0k");

  auto chunked = http::send_request(s.endpoint(), get("/chunked"));
  REQUIRE(chunked.ok());
  CHECK(chunked->body == std::string(5000, 'a') + std::string(5000, 'b') + std::string(5000, 'c'));

  auto missing = http::send_request(s.endpoint(), get("/nope"));
  REQUIRE(missing.ok());  // a status is an answer, not an error
  CHECK(missing->status == 404);
}

TEST_CASE("send_request: limits and failures are errors naming the endpoint") {
  LoopbackServer s;
  auto big = get("/big");
  big.max_response_bytes = 1000;
  auto over = http::send_request(s.endpoint(), big);
  REQUIRE_FALSE(over.ok());
  CHECK(over.error().message.find("over the limit") != std::string::npos);

  auto slow = get("/slow");
  slow.timeout = std::chrono::milliseconds(300);
  const auto started = std::chrono::steady_clock::now();
  auto late = http::send_request(s.endpoint(), slow);
  REQUIRE_FALSE(late.ok());
  CHECK(late.error().message.find("timed out") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::milliseconds(1200));

  // Nothing listens on a port just released.
  const int closed_port = [] {
    httplib::Server probe;
    return probe.bind_to_any_port("127.0.0.1");
  }();
  auto refused = http::send_request(http::ClientEndpoint{"127.0.0.1", closed_port, ""}, get("/"));
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().code == core::Errc::unavailable);
  CHECK(refused.error().message.find("127.0.0.1:" + std::to_string(closed_port)) != std::string::npos);
}

TEST_CASE("send_request over a unix socket, close-delimited body") {
  test::TempDir dir;
  const std::string path = dir.str() + "/engine.sock";
  const int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(listener, 4) == 0);
  std::string seen;
  std::thread engine([&] {
    const int c = ::accept(listener, nullptr, nullptr);
    char buf[4096];
    const ssize_t n = ::read(c, buf, sizeof buf);
    if (n > 0) seen.assign(buf, static_cast<size_t>(n));
    const std::string answer = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\nApi-Version: 1.43\r\n\r\n[{\"Id\":\"abc\"}]";
    (void)::write(c, answer.data(), answer.size());
    ::close(c);
  });
  auto ep = http::ClientEndpoint::parse("unix://" + path);
  REQUIRE(ep.ok());
  auto res = http::send_request(*ep, get("/v1.43/containers/json"));
  engine.join();
  ::close(listener);
  REQUIRE(res.ok());
  CHECK(res->status == 200);
  CHECK(res->header("Api-Version") == "1.43");
  CHECK(res->body == R"([{"Id":"abc"}])");
  CHECK(seen.rfind("GET /v1.43/containers/json HTTP/1.1\r\n", 0) == 0);
}

TEST_CASE("ClientEndpoint::parse") {
  auto tcp = http::ClientEndpoint::parse("http://127.0.0.1:8080/v1");
  REQUIRE(tcp.ok());
  CHECK(tcp->host == "127.0.0.1");
  CHECK(tcp->port == 8080);
  auto v6 = http::ClientEndpoint::parse("[::1]:9");
  REQUIRE(v6.ok());
  CHECK(v6->host == "::1");
  CHECK_FALSE(http::ClientEndpoint::parse("unix://relative.sock").ok());
  CHECK_FALSE(http::ClientEndpoint::parse("localhost").ok());
  CHECK_FALSE(http::ClientEndpoint::parse("h:99999").ok());
  CHECK_FALSE(http::ClientEndpoint::parse("h:12x").ok());
}
