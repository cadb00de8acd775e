#include <doctest/doctest.h>

#include <random>
#include <string>
#include <utility>
#include <vector>

#include <re2/re2.h>

#include "files/content_search.hpp"
#include "files/grep_matcher.hpp"
#include "files/required_literal.hpp"

using execd::files::foldable_piece;
using execd::files::required_literal;

TEST_CASE("required literal: the longest run every match must contain") {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"\\w+_MAX\\b", "_MAX"},
      {"struct \\w+ \\{", "struct "},
      {"[A-Z][a-z]+ing the", "ing the"},
      {"colou?r", "colo"},
      {"abc+d", "abc"},
      {"ab*cd", "cd"},
      {"x{0,3}yz", "yz"},
      {"xy{2}z", "xy"},
      {"xy{2,}?z", "xy"},
      {"foo(bar)?bazz", "bazz"},
      {"\\x41BC", "BC"},
      {"\\x{263a}xyz", "xyz"},
      {"\\pLxyz\\p{Greek}", "xyz"},
      {"\\101abc", "abc"},
      {"a\\.b\\(c", "a.b(c"},
      {"[abc]def", "def"},
      {"[]x]yz", "yz"},
      {"[[:alpha:]]+qq", "qq"},
      {"\xc3\xa9?abc", "abc"},
      {"a\xc3\xa9+", "a\xc3\xa9"},
      {"x\xc3\xa9*", "x"},
      {"^#\\s*include <sys/", "include <sys/"},
      {"(?:ab|cd)ef", "ef"},
  };
  for (const auto& [pattern, literal] : cases) {
    INFO(pattern);
    CHECK(required_literal(pattern, false) == literal);
  }
  // None when unsure or when there is none.
  for (const char* p : {"a|b", "abc|def", "(?i)abc", "\\Qa.b\\E", "a{", "x{,2}", "\\w+", ".*", "(abc", "abc)", "[abc"}) {
    INFO(p);
    CHECK(required_literal(p, false).empty());
  }
}

TEST_CASE("required literal with ignore_case: no k, s or non-ASCII byte, which RE2 folds beyond ASCII") {
  CHECK(required_literal("gnu general", true) == "gnu general");
  CHECK(required_literal("mask_size", true) == "ize");
  CHECK(required_literal("caf\xc3\xa9 au lait", true) == " au lait");
  CHECK(foldable_piece("KELVIN", true) == "ELVIN");
  CHECK(foldable_piece("KELVIN", false) == "KELVIN");
}

namespace {

/// The first match in each line by RE2 alone (never_nl, (?m)), the reference.
std::vector<std::pair<size_t, size_t>> reference(const std::string& pattern, bool ic, const std::string& text) {
  RE2::Options o;
  o.set_case_sensitive(!ic);
  o.set_never_nl(true);
  RE2 re("(?m)" + pattern, o);
  REQUIRE(re.ok());
  std::vector<std::pair<size_t, size_t>> out;
  size_t pos = 0;
  re2::StringPiece m;
  while (pos < text.size() && re.Match(text, pos, text.size(), RE2::UNANCHORED, &m, 1)) {
    const size_t s = static_cast<size_t>(m.data() - text.data());
    out.emplace_back(s, s + m.size());
    const size_t nl = text.find('\n', s);
    pos = nl == std::string::npos ? text.size() : nl + 1;
  }
  return out;
}

std::vector<std::pair<size_t, size_t>> matched(const std::string& pattern, bool ic, const std::string& text) {
  execd::files::GrepQuery q;
  q.pattern = pattern;
  q.ignore_case = ic;
  execd::files::GrepMatcher m;
  REQUIRE(m.compile(q));
  std::vector<std::pair<size_t, size_t>> out;
  size_t pos = 0;
  size_t s = 0;
  size_t e = 0;
  while (pos < text.size() && m.find(text.data(), text.size(), pos, text.size(), s, e)) {
    out.emplace_back(s, e);
    const size_t nl = text.find('\n', s);
    pos = nl == std::string::npos ? text.size() : nl + 1;
  }
  return out;
}

}  // namespace

TEST_CASE("grep matcher: the literal prefilter never changes what RE2 alone finds") {
  std::mt19937 rng(1616);
  const std::string alphabet = "abcsk_MAX \n\t.(K";
  const std::vector<std::string> patterns = {"\\w+_MAX\\b", "ab+c", "a.c", "^ab", "ab$", "b(a|c)_M", "(?:x|ab)c*_", "sk?a",
                                             "[a-c]+_MAX", "a\\.\\(", "c\\s+a", "MAX\\b", "ab", "_MAX"};
  for (int round = 0; round < 300; ++round) {
    std::string text(std::uniform_int_distribution<size_t>(0, 400)(rng), 0);
    for (auto& c : text) c = alphabet[std::uniform_int_distribution<size_t>(0, alphabet.size() - 1)(rng)];
    for (const auto& p : patterns) {
      for (bool ic : {false, true}) {
        INFO("pattern=" << p << " ic=" << ic << " text=" << text);
        CHECK(matched(p, ic, text) == reference(p, ic, text));
      }
    }
  }
  // Kelvin sign (U+212A) and long s (U+017F) match k and s under case folding.
  const std::string text = "x \xe2\x84\xaa\xc5\xbf y\n";
  CHECK(matched("ks", true, text).size() == 1);
  CHECK(matched("x ks y", true, text).size() == 1);
}

TEST_CASE("grep matcher: random patterns find what RE2 alone finds, line by line") {
  std::mt19937 rng(4242);
  // Pieces of RE2 syntax; quantifiers may land after anything (RE2 rejects some: skipped).
  const std::vector<std::string> pieces = {"a", "b", "c", "k", "S", "_", " ", "ab", "bc", "\\w", "\\d", "\\s", ".", "[ab]",
                                           "[^a]", "(a|bc)", "(?:ab)", "*", "+", "?", "{2}", "{0,2}", "{1,}", "^", "$",
                                           "\\b", "|", "\\.", "(?i:ab)", "\\x61", "\xc3\xa9"};
  const std::string alphabet = "abcksS_ .\n";
  int compiled = 0;
  for (int round = 0; round < 600; ++round) {
    std::string pattern;
    const size_t n = std::uniform_int_distribution<size_t>(1, 7)(rng);
    for (size_t i = 0; i < n; ++i) pattern += pieces[std::uniform_int_distribution<size_t>(0, pieces.size() - 1)(rng)];
    RE2::Options o;
    o.set_log_errors(false);
    if (!RE2("(?m)" + pattern, o).ok()) continue;
    ++compiled;
    for (int t = 0; t < 5; ++t) {
      std::string text(std::uniform_int_distribution<size_t>(0, 120)(rng), 0);
      for (auto& c : text) c = alphabet[std::uniform_int_distribution<size_t>(0, alphabet.size() - 1)(rng)];
      for (bool ic : {false, true}) {
        INFO("pattern=" << pattern << " ic=" << ic << " literal=" << required_literal(pattern, ic) << " text=" << text);
        CHECK(matched(pattern, ic, text) == reference(pattern, ic, text));
      }
    }
  }
  CHECK(compiled > 300);
}
