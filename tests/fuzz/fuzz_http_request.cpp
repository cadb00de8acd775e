// Fuzzes HTTP request heads and body framing the way the daemon reads them: the real
// http::HttpServer (BufferedServer, ConnectionStream, httplib's process_request, our
// pre-routing and error handlers) on 127.0.0.1, with the download routes (Range and
// offset/limit line selection) over a temp directory, a JSON route and a streaming
// multipart route. Each input is sent on a fresh TCP connection, then the write side is
// shut. Checks: the server closes the connection within a bound (no hang), keeps
// accepting, and a 4xx it sends first carries the {"code","message"} JSON body.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "api/download_routes.hpp"
#include "core/json_parse.hpp"
#include "files/file_service.hpp"
#include "http/http_server.hpp"
#include "http/json_io.hpp"
#include "http/multipart_reader.hpp"

namespace http = execd::http;
using namespace std::chrono_literals;

namespace {

[[noreturn]] void fail(const std::string& what, std::string_view input) {
  std::fprintf(stderr, "http_request: %s\n  input (%zu bytes): ", what.c_str(), input.size());
  for (unsigned char c : input.substr(0, 400)) std::fprintf(stderr, c >= 0x20 && c < 0x7f ? "%c" : "\\x%02x", c);
  std::fprintf(stderr, "\n");
  std::abort();
}

struct Server {
  std::filesystem::path root;
  std::unique_ptr<http::HttpServer> server;
  std::thread thread;
  int port = 0;

  Server() {
    char tmpl[] = "/tmp/execd-fuzz-http-XXXXXX";
    root = ::mkdtemp(tmpl);
    std::ofstream(root / "lines.txt") << "one\r\ntwo\nthree\n\nfive";
    std::ofstream(root / "data.bin") << std::string(300, 'x');
    http::ServerOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.read_timeout = std::chrono::seconds(1);
    server = std::make_unique<http::HttpServer>(options);
    execd::files::FileService::Options fo;
    fo.root = root.string();
    execd::api::register_download_routes(*server, std::make_shared<execd::files::FileService>(fo));
    server->route(http::HttpServer::Method::post, "/json", [](const httplib::Request& req, httplib::Response& res) {
      auto body = http::parse_json_body(req);
      if (!body) return http::write_error(res, body.error());
      http::write_json(res, *body);
    });
    server->route_streaming(http::HttpServer::Method::post, "/upload",
                            [](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& read) {
                              auto boundary = http::MultipartReader::boundary_of(req.get_header_value("Content-Type"));
                              if (!boundary) return http::write_error(res, boundary.error());
                              size_t bytes = 0;
                              http::MultipartReader reader(
                                  *boundary, [](const std::string&, const std::string&) { return true; },
                                  [&](std::string_view b) {
                                    bytes += b.size();
                                    return true;
                                  });
                              read([&](const char* p, size_t n) { return reader.feed(std::string_view(p, n)); });
                              http::write_json(res, {{"bytes", bytes}, {"done", reader.done()}});
                            });
    auto bound = server->bind();
    if (!bound) {
      std::fprintf(stderr, "http_request: bind failed: %s\n", bound.error().message.c_str());
      std::abort();
    }
    port = *bound;
    thread = std::thread([this] { server->run(); });
  }
};

// The first response's status and body, when the bytes hold a whole one with a
// Content-Length (chunked and streamed responses are left alone).
bool first_response(const std::string& out, int& status, std::string& body) {
  if (out.rfind("HTTP/1.1 ", 0) != 0 || out.size() < 12) return false;
  status = std::atoi(out.c_str() + 9);
  const size_t end = out.find("\r\n\r\n");
  if (end == std::string::npos) return false;
  const std::string head = out.substr(0, end);
  const size_t cl = head.find("Content-Length: ");
  if (cl == std::string::npos) return false;
  const size_t n = std::strtoull(head.c_str() + cl + 16, nullptr, 10);
  if (out.size() < end + 4 + n) return false;
  body = out.substr(end + 4, n);
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Server* server = new Server();  // lives for the process; libFuzzer exits without unwinding
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(server->port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) fail("the server stopped accepting", input);

  // Write and read together: a server answering early must not deadlock a large input.
  std::string out;
  size_t sent = 0;
  bool write_shut = false;
  const auto deadline = std::chrono::steady_clock::now() + 8s;
  char buf[65536];
  for (;;) {
    if (sent == input.size() && !write_shut) {
      ::shutdown(fd, SHUT_WR);
      write_shut = true;
    }
    pollfd p{fd, static_cast<short>(POLLIN | (write_shut ? 0 : POLLOUT)), 0};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left <= 0ms || ::poll(&p, 1, static_cast<int>(left.count())) == 0) {
      fail("the server neither answered nor closed the connection within 8 s", input);
    }
    if ((p.revents & POLLOUT) != 0 && !write_shut) {
      const ssize_t n = ::send(fd, input.data() + sent, input.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) sent += static_cast<size_t>(n);
      if (n < 0 && errno != EAGAIN) {
        sent = input.size();  // the server closed early: fine, read what it said
      }
    }
    if ((p.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN)) break;
      if (n > 0 && out.size() < (1u << 20)) out.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(fd);

  int status = 0;
  std::string body;
  if (input.rfind("HEAD ", 0) != 0 && first_response(out, status, body) && status >= 400 && status < 500) {
    auto j = execd::core::parse_json(body);
    if (!j || !j->is_object() || !j->contains("code") || !j->contains("message")) {
      fail("a " + std::to_string(status) + " without a {\"code\",\"message\"} body: " + body.substr(0, 200), input);
    }
  }
  return 0;
}
