#include <doctest/doctest.h>

#include "commands/line_splitter.hpp"

using execd::commands::LineSplitter;
using Lines = std::vector<std::string>;

namespace {

Lines feed_all(LineSplitter& s, const std::vector<std::string>& chunks) {
  Lines out;
  for (const auto& c : chunks) {
    auto got = s.feed(c);
    out.insert(out.end(), got.begin(), got.end());
  }
  auto tail = s.finish();
  out.insert(out.end(), tail.begin(), tail.end());
  return out;
}

}  // namespace

TEST_CASE("blank lines are \"\\n\", terminators stripped (the smoke test's exact case)") {
  LineSplitter s;
  CHECK(feed_all(s, {"a\n\nb\n\n\nc\n"}) == Lines{"a", "\n", "b", "\n", "\n", "c"});
}

TEST_CASE("CRLF counts once, also split across chunks; a lone CR ends a line") {
  LineSplitter s;
  CHECK(feed_all(s, {"one\r", "\ntwo\r\n", "three\rfour\n"}) == Lines{"one", "two", "three", "four"});
  CHECK(feed_all(s, {"x\r\r\n"}) == Lines{"x", "\n"});
}

TEST_CASE("a last line without a terminator comes from finish()") {
  LineSplitter s;
  CHECK(s.feed("par").empty());
  CHECK(s.feed("tial").empty());
  CHECK(s.finish() == Lines{"partial"});
  CHECK(s.finish().empty());
}

TEST_CASE("sessions drop blank lines") {
  LineSplitter s(false);
  CHECK(feed_all(s, {"a\n\n\r\nb\n"}) == Lines{"a", "b"});
}

TEST_CASE("a line longer than max_line comes in pieces, so memory stays bounded") {
  LineSplitter s(true, 4);
  CHECK(feed_all(s, {"abcdefghij\nxy"}) == Lines{"abcd", "efgh", "ij", "xy"});
}
