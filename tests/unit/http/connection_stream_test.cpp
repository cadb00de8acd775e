#include <doctest/doctest.h>

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "core/unique_fd.hpp"
#include "http/connection_stream.hpp"

using namespace execd;
using namespace std::chrono_literals;

namespace {

struct SocketPair {
  core::UniqueFd ours;
  core::UniqueFd peer;
  SocketPair() {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    ours.reset(fds[0]);
    peer.reset(fds[1]);
  }
  void send(const std::string& s) const { REQUIRE(::write(peer.get(), s.data(), s.size()) == static_cast<ssize_t>(s.size())); }
};

std::string read_exactly(http::ConnectionStream& stream, size_t n, size_t piece) {
  std::string out;
  char buf[8192];
  while (out.size() < n) {
    const ssize_t got = stream.read(buf, std::min(piece, n - out.size()));
    if (got <= 0) break;
    out.append(buf, static_cast<size_t>(got));
  }
  return out;
}

}  // namespace

TEST_CASE("ConnectionStream serves small reads from one receive and keeps what follows for the next request") {
  SocketPair s;
  http::ConnectionStream stream(s.ours.get(), 2000ms, 2000ms);
  s.send("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
  CHECK(read_exactly(stream, 19, 1) == "GET /a HTTP/1.1\r\n\r\n");
  // The second request is already buffered: nothing more is sent, yet it is there.
  CHECK(stream.wait_for_request(10ms, -1));
  CHECK(stream.is_readable());
  CHECK(read_exactly(stream, 19, 4096) == "GET /b HTTP/1.1\r\n\r\n");
}

TEST_CASE("ConnectionStream passes large bodies through whole") {
  SocketPair s;
  http::ConnectionStream stream(s.ours.get(), 2000ms, 2000ms);
  std::string body;
  for (int i = 0; body.size() < 200000; ++i) body += std::to_string(i) + ",";
  std::thread writer([&] { s.send(body); });
  CHECK(read_exactly(stream, body.size(), 4096) == body);
  writer.join();
}

TEST_CASE("ConnectionStream reads time out, and end of stream and a broken peer are errors") {
  SocketPair s;
  http::ConnectionStream stream(s.ours.get(), 50ms, 50ms);
  char buf[16];
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(stream.read(buf, sizeof buf) == -1);  // nothing arrives within the read timeout
  CHECK(std::chrono::steady_clock::now() - t0 >= 45ms);
  CHECK_FALSE(stream.wait_for_request(30ms, -1));
  CHECK(std::chrono::steady_clock::now() - t0 >= 75ms);
  CHECK(stream.write("hi", 2) == 2);
  CHECK(stream.is_writable());
  s.peer.reset();
  CHECK(stream.read(buf, sizeof buf) == -1);
  // Writing to a closed peer fails (EPIPE, no SIGPIPE) and marks the stream broken.
  ssize_t r = 0;
  for (int i = 0; i < 3 && r >= 0; ++i) r = stream.write("x", 1);
  CHECK(r == -1);
  CHECK_FALSE(stream.is_writable());
}

TEST_CASE("ConnectionStream bounds a request's head as a whole, and each body read on its own") {
  SocketPair s;
  http::ConnectionStream stream(s.ours.get(), 300ms, 300ms);
  // Head trickled a byte every 50 ms: each wait is short, but the whole takes too long.
  std::thread trickler([&] {
    for (char c : std::string("GET / HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaa")) {
      if (::write(s.peer.get(), &c, 1) != 1) return;
      std::this_thread::sleep_for(50ms);
    }
  });
  stream.begin_request();
  const auto t0 = std::chrono::steady_clock::now();
  char c;
  while (stream.read(&c, 1) == 1) {
  }
  const auto took = std::chrono::steady_clock::now() - t0;
  CHECK(took >= 250ms);
  CHECK(took < 1000ms);
  CHECK(stream.head_timed_out());
  trickler.join();
}

TEST_CASE("ConnectionStream: once the head has ended, a slow body is fine") {
  SocketPair s;
  http::ConnectionStream stream(s.ours.get(), 300ms, 300ms);
  stream.begin_request();
  s.send("POST / HTTP/1.1\r\nContent-Length: 6\r\n\r\nab");
  CHECK(read_exactly(stream, 38, 1) == "POST / HTTP/1.1\r\nContent-Length: 6\r\n\r\n");
  CHECK(read_exactly(stream, 2, 4096) == "ab");
  for (const char* piece : {"cd", "ef"}) {  // 0.4 s in all: past a head deadline, each wait within the timeout
    std::this_thread::sleep_for(200ms);
    s.send(piece);
    CHECK(read_exactly(stream, 2, 4096) == piece);
  }
  CHECK_FALSE(stream.head_timed_out());
  // The next request on the connection gets a deadline of its own.
  stream.begin_request();
  s.send("GET / HTTP/1.1\r\n\r\n");
  CHECK(read_exactly(stream, 18, 1) == "GET / HTTP/1.1\r\n\r\n");
}

TEST_CASE("ConnectionStream stops waiting for a next request once the stop eventfd is readable") {
  SocketPair s;
  http::ConnectionStream stream(s.ours.get(), 2000ms, 2000ms);
  core::UniqueFd stop(::eventfd(0, EFD_CLOEXEC));
  std::thread stopper([&] {
    std::this_thread::sleep_for(50ms);
    const uint64_t one = 1;
    CHECK(::write(stop.get(), &one, sizeof one) == sizeof one);
  });
  const auto t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(stream.wait_for_request(10000ms, stop.get()));
  CHECK(std::chrono::steady_clock::now() - t0 < 5000ms);
  stopper.join();
  s.send("GET / HTTP/1.1\r\n\r\n");  // even a waiting request is not served once stopping
  CHECK_FALSE(stream.wait_for_request(10000ms, stop.get()));
}

TEST_CASE("ConnectionStream waits for room up to the write timeout") {
  SocketPair s;
  http::ConnectionStream stream(s.ours.get(), 50ms, 50ms);
  const std::string chunk(1 << 16, 'x');
  ssize_t r = 0;
  const auto t0 = std::chrono::steady_clock::now();
  while (r >= 0 && std::chrono::steady_clock::now() - t0 < 5s) r = stream.write(chunk.data(), chunk.size());
  CHECK(r == -1);  // the peer never reads: the socket fills and the write times out
  CHECK_FALSE(stream.is_writable());
}

TEST_CASE("ConnectionStream::peek_head waits for a whole head and leaves it to be read") {
  SocketPair s;
  http::ConnectionStream stream(s.ours.get(), 2000ms, 2000ms);
  stream.begin_request();
  std::thread writer([&] {
    s.send("POST /x HTTP/1.1\r\nContent-Le");
    std::this_thread::sleep_for(30ms);
    s.send("ngth: 2\r\n\r\nabGET /y HTTP/1.1\r\n\r\n");
  });
  std::string_view head;
  REQUIRE(stream.peek_head(1024, head) == http::ConnectionStream::HeadWait::ready);
  CHECK(head == "POST /x HTTP/1.1\r\nContent-Length: 2\r\n\r\n");
  writer.join();
  // Nothing was consumed: httplib reads the same bytes, then the body, then the next request.
  CHECK(read_exactly(stream, 39, 1) == "POST /x HTTP/1.1\r\nContent-Length: 2\r\n\r\n");
  CHECK(read_exactly(stream, 2, 4096) == "ab");
  stream.begin_request();
  REQUIRE(stream.peek_head(1024, head) == http::ConnectionStream::HeadWait::ready);
  CHECK(head == "GET /y HTTP/1.1\r\n\r\n");
}

TEST_CASE("ConnectionStream::peek_head: too large, grown past the buffer, end of stream") {
  {
    SocketPair s;
    http::ConnectionStream stream(s.ours.get(), 2000ms, 2000ms);
    stream.begin_request();
    s.send("GET / HTTP/1.1\r\nX: " + std::string(2000, 'a'));
    std::string_view head;
    CHECK(stream.peek_head(1024, head) == http::ConnectionStream::HeadWait::too_large);
  }
  {
    // A limit above the 64 KiB buffer: the buffer grows to hold the head.
    SocketPair s;
    http::ConnectionStream stream(s.ours.get(), 2000ms, 2000ms);
    stream.begin_request();
    const std::string big = "GET / HTTP/1.1\r\nX: " + std::string(100000, 'a') + "\r\n\r\n";
    std::thread writer([&] { s.send(big + "tail"); });
    std::string_view head;
    REQUIRE(stream.peek_head(200000, head) == http::ConnectionStream::HeadWait::ready);
    CHECK(head == big);
    writer.join();
    CHECK(read_exactly(stream, big.size() + 4, 7000) == big + "tail");
  }
  {
    SocketPair s;
    http::ConnectionStream stream(s.ours.get(), 2000ms, 2000ms);
    stream.begin_request();
    s.send("GET / HTTP/1.1\r\n");
    s.peer.reset();
    std::string_view head;
    CHECK(stream.peek_head(1024, head) == http::ConnectionStream::HeadWait::failed);
  }
}

TEST_CASE("ConnectionStream: a bounded body must arrive in time; a line read byte by byte is bounded") {
  {
    SocketPair s;
    http::ConnectionStream stream(s.ours.get(), 300ms, 300ms);
    stream.begin_request();
    s.send("POST / HTTP/1.1\r\n\r\n");
    REQUIRE(read_exactly(stream, 19, 1).size() == 19);
    stream.bound_body(250ms);
    const auto t0 = std::chrono::steady_clock::now();
    bool failed = false;
    for (int i = 0; i < 20 && !failed; ++i) {  // a byte every 100 ms: each wait is short
      s.send("x");
      char c;
      failed = stream.read(&c, 1) != 1;
      std::this_thread::sleep_for(100ms);
    }
    CHECK(failed);
    CHECK(std::chrono::steady_clock::now() - t0 < 1000ms);
    CHECK(stream.is_spoiled());
  }
  {
    SocketPair s;
    http::ConnectionStream stream(s.ours.get(), 2000ms, 2000ms);
    stream.begin_request();
    s.send("POST / HTTP/1.1\r\n\r\n");
    REQUIRE(read_exactly(stream, 19, 1).size() == 19);
    std::thread writer([&] { s.send(std::string(http::ConnectionStream::kMaxLineBytes + 10, '0')); });
    size_t got = 0;
    char c;
    while (stream.read(&c, 1) == 1) ++got;
    CHECK(got == http::ConnectionStream::kMaxLineBytes);
    CHECK(stream.is_spoiled());
    writer.join();
  }
}
