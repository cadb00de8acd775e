#include <doctest/doctest.h>

#include <chrono>
#include <string>

#include "http/request_head.hpp"

using execd::http::check_request_head;
using execd::http::find_head_end;
using execd::http::HeadLimits;
using namespace std::string_literals;

namespace {

int status_of(const std::string& head, const HeadLimits& limits = {}) {
  const auto c = check_request_head(head, limits);
  return c ? 0 : c.status;
}

std::string request(const std::string& headers) { return "POST /command HTTP/1.1\r\nHost: x\r\n" + headers + "\r\n"; }

}  // namespace

TEST_CASE("find_head_end stops after the first blank line") {
  CHECK_FALSE(find_head_end("GET / HTTP/1.1\r\nHost: x\r\n").has_value());
  CHECK(find_head_end("GET / HTTP/1.1\r\n\r\nbody") == 18u);
}

TEST_CASE("an ordinary head is accepted with its framing") {
  const auto head = request("Content-Length: 12\r\nContent-Type: application/json\r\n");
  auto c = check_request_head(head, {});
  REQUIRE(c);
  CHECK(c.info->method == "POST");
  CHECK(c.info->content_length == 12u);
  CHECK_FALSE(c.info->is_chunked);
  CHECK(c.info->has_body());
  CHECK(c.info->header_count == 3);
  auto chunked = check_request_head(request("Transfer-Encoding: Chunked\r\n"), {});
  REQUIRE(chunked);
  CHECK(chunked.info->is_chunked);
  auto get = check_request_head("GET /ping HTTP/1.0\r\n\r\n", {});
  REQUIRE(get);
  CHECK_FALSE(get.info->has_body());
  // The same length twice is one length (RFC 9110 8.6).
  CHECK(status_of(request("Content-Length: 5\r\nContent-Length: 5\r\n")) == 0);
}

TEST_CASE("ambiguous body framing is 400, an unknown transfer coding 501") {
  CHECK(status_of(request("Content-Length: 5\r\nContent-Length: 6\r\n")) == 400);
  CHECK(status_of(request("Content-Length: -1\r\n")) == 400);
  CHECK(status_of(request("Content-Length: +5\r\n")) == 400);
  CHECK(status_of(request("Content-Length: abc\r\n")) == 400);
  CHECK(status_of(request("Content-Length: 5, 5\r\n")) == 400);
  CHECK(status_of(request("Content-Length: \r\n")) == 400);
  CHECK(status_of(request("Content-Length: 99999999999999999999999\r\n")) == 400);
  CHECK(status_of(request("Content-Length: 18446744073709551616\r\n")) == 400);
  CHECK(status_of(request("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n")) == 400);
  CHECK(status_of(request("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n")) == 400);
  CHECK(status_of(request("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n")) == 400);
  CHECK(status_of(request("Transfer-Encoding: gzip\r\n")) == 501);
  CHECK(status_of(request("Transfer-Encoding: gzip, chunked\r\n")) == 501);
  CHECK(status_of(request("Content-Length : 5\r\n")) == 400);  // not a token: a space before the colon
}

TEST_CASE("malformed lines are 400") {
  CHECK(status_of("GET / HTTP/1.1\nHost: x\r\n\r\n") == 400);        // bare LF
  CHECK(status_of("GET / HTTP/1.1\r\nHost: x\ry\r\n\r\n") == 400);   // bare CR
  CHECK(status_of(request("NoColonHere\r\n")) == 400);
  CHECK(status_of(request("X-A: a\0b\r\n"s)) == 400);  // NUL
  CHECK(status_of(request("X-A: a\x01\r\n")) == 400);
  CHECK(status_of(request("X-A: a\r\n folded\r\n")) == 400);
  CHECK(status_of(request(": empty-name\r\n")) == 400);
  CHECK(status_of("\r\nGET / HTTP/1.1\r\n\r\n") == 400);
  CHECK(status_of("GET  / HTTP/1.1\r\n\r\n") == 400);
  CHECK(status_of("GET / HTTP/2.0\r\n\r\n") == 400);
  CHECK(status_of("G(T / HTTP/1.1\r\n\r\n") == 400);
  CHECK(status_of("GET / HTTP/1.1") == 400);
  CHECK(status_of("") == 400);
  CHECK(status_of("GET /a\0b HTTP/1.1\r\n\r\n"s) == 400);
  CHECK(status_of(request("X-Tab: a\tb\r\n")) == 0);  // a tab is allowed in a value
}

TEST_CASE("sizes: header count and bytes 431, target 414, Range 416") {
  std::string many;
  for (int i = 0; i < 100; ++i) many += "X-" + std::to_string(i) + ": v\r\n";
  CHECK(status_of(request(many)) == 431);  // 100 + Host
  HeadLimits roomy;
  roomy.max_header_count = 101;
  CHECK(status_of(request(many), roomy) == 0);
  HeadLimits small;
  small.max_head_bytes = 1024;
  CHECK(status_of(request("X-Big: " + std::string(1100, 'a') + "\r\n"), small) == 431);
  CHECK(status_of("GET /" + std::string(8192, 'a') + " HTTP/1.1\r\n\r\n") == 414);
  CHECK(status_of("GET /" + std::string(8000, 'a') + " HTTP/1.1\r\n\r\n") == 0);
  std::string ranges = "bytes=0-1";
  while (ranges.size() < 2000) ranges += ",2-3";
  CHECK(status_of(request("Range: " + ranges + "\r\n")) == 416);
  CHECK(status_of(request("Range: bytes=0-10,20-30\r\n")) == 0);
}

TEST_CASE("a head cut before its blank line is judged on its complete lines") {
  CHECK(status_of("GET / HTTP/1.1\r\nHost: x\r\nX-Partial: ab") == 0);
  CHECK(status_of("GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\nX") == 400);
}

TEST_CASE("linear time on hostile bytes") {
  const auto start = std::chrono::steady_clock::now();
  std::string colons = "GET / HTTP/1.1\r\n" + std::string(1 << 20, ':') + "\r\n\r\n";
  HeadLimits huge;
  huge.max_head_bytes = 4 << 20;
  CHECK(status_of(colons, huge) == 400);
  std::string lines = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 100000; ++i) lines += "a:b\r\n";
  huge.max_header_count = 1000000;
  CHECK(status_of(lines + "\r\n", huge) == 0);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
}
