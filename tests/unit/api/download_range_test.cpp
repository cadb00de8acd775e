#include <doctest/doctest.h>

#include "api/download_routes.hpp"

using execd::api::parse_range;

TEST_CASE("Range: closed, open, suffix, clamped, first of a list; errors outside the file") {
  auto r = parse_range("bytes=0-9", 100).value();
  CHECK(r->start == 0);
  CHECK(r->end == 9);
  r = parse_range("bytes=90-", 100).value();
  CHECK(r->start == 90);
  CHECK(r->end == 99);
  r = parse_range("bytes=-10", 100).value();
  CHECK(r->start == 90);
  r = parse_range("bytes=-1000", 100).value();
  CHECK(r->start == 0);
  r = parse_range("bytes=50-5000", 100).value();
  CHECK(r->end == 99);
  r = parse_range("bytes= 1-2, 5-6", 100).value();
  CHECK(r->start == 1);
  CHECK(r->end == 2);
  CHECK_FALSE(parse_range("bytes=100-", 100));
  CHECK_FALSE(parse_range("bytes=5-1", 100));
  CHECK_FALSE(parse_range("bytes=x-1", 100));
  CHECK_FALSE(parse_range("items=0-1", 100));
  CHECK_FALSE(parse_range("bytes=-0", 100));
  CHECK_FALSE(parse_range("bytes=-5", 0));
}

TEST_CASE("Range: numbers past 64 bits mean the end (or past it), never a malformed header") {
  auto r = parse_range("bytes=10-99999999999999999999999", 100).value();
  CHECK(r->start == 10);
  CHECK(r->end == 99);
  r = parse_range("bytes=-99999999999999999999999", 100).value();
  CHECK(r->start == 0);
  CHECK(r->end == 99);
  auto past = parse_range("bytes=99999999999999999999999-", 100);
  REQUIRE_FALSE(past);
  CHECK(past.error().message.find("past the end") != std::string::npos);
  CHECK_FALSE(parse_range("bytes=+1-2", 100));
  CHECK_FALSE(parse_range("bytes=1--2", 100));
}
