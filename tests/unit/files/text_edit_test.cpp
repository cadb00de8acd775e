#include <doctest/doctest.h>

#include "files/text_edit.hpp"
#include "files/unified_diff.hpp"

using namespace execd;

namespace {

core::Result<std::string> edit(const std::string& text, std::vector<files::TextEdit> edits, uint64_t& n) {
  return files::apply_text_edits(text, edits, "f.txt", n);
}

}  // namespace

TEST_CASE("an edit whose old text occurs once replaces it") {
  uint64_t n = 0;
  auto r = edit("a\nb\nc\n", {{"b\n", "B\n", 1}}, n);
  REQUIRE(r);
  CHECK(*r == "a\nB\nc\n");
  CHECK(n == 1);
}

TEST_CASE("zero matches and several matches are conflicts naming the count and lines") {
  uint64_t n = 0;
  auto none = edit("a\nb\n", {{"zzz", "y", 1}}, n);
  REQUIRE_FALSE(none);
  CHECK(none.error().code == core::Errc::conflict);
  CHECK(none.error().message.find("not found") != std::string::npos);

  auto many = edit("x\ny\nx\ny\nx\n", {{"x", "z", 1}}, n);
  REQUIRE_FALSE(many);
  CHECK(many.error().code == core::Errc::conflict);
  CHECK(many.error().message.find("occurs 3 times") != std::string::npos);
  CHECK(many.error().message.find("lines 1, 3, 5") != std::string::npos);

  auto all = edit("x\ny\nx\n", {{"x", "z", 2}}, n);
  REQUIRE(all);
  CHECK(*all == "z\ny\nz\n");
  CHECK(n == 2);
}

TEST_CASE("several edits apply in order, all or nothing") {
  uint64_t n = 0;
  auto r = edit("one two three", {{"one", "1", 1}, {"1 two", "12", 1}}, n);
  REQUIRE(r);
  CHECK(*r == "12 three");
  CHECK(n == 2);
  auto bad = edit("one two three", {{"one", "1", 1}, {"missing", "x", 1}}, n);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("edit 2 of 2") != std::string::npos);
}

TEST_CASE("LF edits apply to a CRLF file and keep its line ends") {
  uint64_t n = 0;
  auto r = edit("a\r\nb\r\nc\r\n", {{"a\nb\n", "a\nX\n", 1}}, n);
  REQUIRE(r);
  CHECK(*r == "a\r\nX\r\nc\r\n");
}

TEST_CASE("empty old and zero expected are invalid") {
  uint64_t n = 0;
  CHECK(edit("a", {{"", "x", 1}}, n).error().code == core::Errc::invalid_argument);
  CHECK(edit("a", {{"a", "x", 0}}, n).error().code == core::Errc::invalid_argument);
}

TEST_CASE("unified diff: hunks with context, line numbers, no newline at end") {
  CHECK(files::unified_diff("f", "same\n", "same\n").empty());
  const std::string before = "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n";
  std::string after = before;
  after.replace(after.find("2\n"), 2, "two\n");
  after.replace(after.find("11\n"), 3, "");
  const std::string d = files::unified_diff("f", before, after);
  CHECK(d ==
        "--- a/f\n+++ b/f\n"
        "@@ -1,5 +1,5 @@\n 1\n-2\n+two\n 3\n 4\n 5\n"
        "@@ -8,5 +8,4 @@\n 8\n 9\n 10\n-11\n 12\n");
  CHECK(files::unified_diff("f", "a\nb", "a\nc") == "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n\\ No newline at end of file\n");
  CHECK(files::unified_diff("f", "", "new\n") == "--- a/f\n+++ b/f\n@@ -0,0 +1,1 @@\n+new\n");
}

TEST_CASE("unified diff past the edit-distance cap is one replaced block") {
  std::string a;
  std::string b;
  for (int i = 0; i < 100; ++i) a += "a" + std::to_string(i) + "\n", b += "b" + std::to_string(i) + "\n";
  const std::string d = files::unified_diff("f", a, b, 3, 10);
  CHECK(d.find("@@ -1,100 +1,100 @@") != std::string::npos);
}
