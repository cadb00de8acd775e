#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "api/download_routes.hpp"

using execd::api::LineSelector;

namespace {

// The selection of `text` fed in pieces of `step` bytes.
std::string select(const std::string& text, uint64_t offset, uint64_t limit, size_t step) {
  LineSelector s(offset, limit);
  std::string out;
  for (size_t at = 0; at < text.size() && !s.done(); at += step) s.feed(std::string_view(text).substr(at, step), out);
  s.finish(out);
  return out;
}

}  // namespace

TEST_CASE("line selection is the same whatever the chunking") {
  const std::string text = "one\r\ntwo\n\nfour\rstill four\r\r\nsix\r";
  for (size_t step : {1UL, 2UL, 3UL, 7UL, 1000UL}) {
    CAPTURE(step);
    CHECK(select(text, 1, 0, step) == "one\ntwo\n\nfour\rstill four\r\nsix");
    CHECK(select(text, 2, 2, step) == "two\n");
    CHECK(select(text, 4, 1, step) == "four\rstill four\r");
    CHECK(select(text, 5, 5, step) == "six");
    CHECK(select(text, 6, 0, step) == "");  // past the end: nothing
    CHECK(select("a\n", 1, 0, step) == "a");
    CHECK(select("", 1, 0, step) == "");
  }
}

TEST_CASE("line selection stops early and never holds a skipped line") {
  LineSelector s(2, 1);
  std::string out;
  for (int i = 0; i < 1000; ++i) s.feed(std::string(4096, 'x'), out);  // one 4 MB line, skipped
  CHECK(out.empty());
  s.feed("\nwanted\nnot", out);
  CHECK(out == "wanted");
  CHECK(s.done());
  CHECK(LineSelector(UINT64_MAX, UINT64_MAX).done() == false);
}
