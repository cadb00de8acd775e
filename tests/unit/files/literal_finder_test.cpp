#include <doctest/doctest.h>

#include <random>
#include <string>

#include "files/literal_finder.hpp"

using execd::files::LiteralFinder;

namespace {

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

size_t naive_find(const std::string& hay, const std::string& needle, bool fold) {
  for (size_t p = 0; p + needle.size() <= hay.size(); ++p) {
    bool eq = true;
    for (size_t i = 0; i < needle.size() && eq; ++i) eq = fold ? lower(hay[p + i]) == lower(needle[i]) : hay[p + i] == needle[i];
    if (eq) return p;
  }
  return LiteralFinder::npos;
}

}  // namespace

TEST_CASE("literal finder: the first occurrence, as a naive scan finds it, at every length and offset") {
  std::mt19937 rng(16);
  // A small alphabet makes near misses common; 'A'/'a' and '@'/'`' differ only in bit 0x20.
  const std::string alphabet("aAbB@`\n\0xy", 10);
  auto pick = [&] { return alphabet[std::uniform_int_distribution<size_t>(0, alphabet.size() - 1)(rng)]; };
  for (int round = 0; round < 4000; ++round) {
    std::string hay(std::uniform_int_distribution<size_t>(0, 90)(rng), 0);
    for (auto& c : hay) c = pick();
    std::string needle(std::uniform_int_distribution<size_t>(1, 6)(rng), 0);
    for (auto& c : needle) c = pick();
    if (round % 3 == 0 && hay.size() >= needle.size()) {  // plant it, often near the end
      const size_t at = hay.size() - needle.size() - std::uniform_int_distribution<size_t>(0, std::min<size_t>(3, hay.size() - needle.size()))(rng);
      hay.replace(at, needle.size(), needle);
    }
    for (bool fold : {false, true}) {
      LiteralFinder f(needle, fold);
      INFO("hay=" << hay << " needle=" << needle << " fold=" << fold);
      CHECK(f.find(hay.data(), hay.size()) == naive_find(hay, needle, fold));
    }
  }
}

TEST_CASE("literal finder: ASCII case folding only; long haystacks cross the 16-byte blocks") {
  std::string hay(100000, 'x');
  hay.replace(70001, 11, "GNU General");
  CHECK(LiteralFinder("gnu general", true).find(hay.data(), hay.size()) == 70001);
  CHECK(LiteralFinder("gnu general", false).find(hay.data(), hay.size()) == LiteralFinder::npos);
  CHECK(LiteralFinder("GNU General", false).find(hay.data(), hay.size()) == 70001);
  CHECK(LiteralFinder("x", false).find(hay.data(), hay.size()) == 0);
  // Punctuation is compared as is, even where its 0x20 bit differs ('@' and '`').
  const std::string punct = "@[`{";
  CHECK(LiteralFinder("`{", true).find(punct.data(), punct.size()) == 2);
  CHECK(LiteralFinder("@[", true).find(punct.data(), punct.size()) == 0);
  CHECK(LiteralFinder("`[", true).find(punct.data(), punct.size()) == LiteralFinder::npos);
  CHECK(LiteralFinder("\xc3\xa9", true).find("caf\xc3\x89 caf\xc3\xa9", 11) == 9);  // é is not É: no Unicode folding
  CHECK(LiteralFinder("abc", false).find("ab", 2) == LiteralFinder::npos);
}
