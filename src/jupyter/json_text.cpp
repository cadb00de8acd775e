#include "jupyter/json_text.hpp"

#include <cstdint>
#include <cstring>

namespace execd::jupyter {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The code unit of a `\uXXXX` escape starting at s[i] (the backslash), or -1.
long escape_unit(std::string_view s, size_t i) {
  if (i + 6 > s.size() || s[i] != '\\' || s[i + 1] != 'u') return -1;
  long v = 0;
  for (size_t k = 2; k < 6; ++k) {
    const int d = hex_digit(s[i + k]);
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

// Length of the well-formed UTF-8 sequence at s[i] (a non-ASCII lead byte), or, when it is
// ill-formed, 0 with `bad` set to the length of its maximal subpart (at least 1).
size_t utf8_sequence(std::string_view s, size_t i, size_t& bad) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte (Unicode table 3-7)
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;  // no encoded surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    bad = 1;
    return 0;
  }
  for (size_t k = 1; k < n; ++k) {
    const bool ok = i + k < s.size() && (k == 1 ? (b(k) >= lo && b(k) <= hi) : (b(k) >= 0x80 && b(k) <= 0xBF));
    if (!ok) {
      bad = k;
      return 0;
    }
  }
  return n;
}

}  // namespace

std::optional<std::string> repair_json_text(std::string_view s) {
  std::optional<std::string> out;
  size_t copied = 0;  // s[0, copied) is already in out
  const auto fix = [&](size_t at, size_t len, std::string_view with) {
    if (!out) {
      out.emplace();
      out->reserve(s.size() + 16);
    }
    out->append(s.data() + copied, at - copied);
    out->append(with);
    copied = at + len;
  };
  size_t i = 0;
  while (i < s.size()) {
    if (i + 8 <= s.size()) {
      uint64_t word = 0;
      std::memcpy(&word, s.data() + i, 8);
      // Eight plain ASCII bytes without a backslash: nothing to look at.
      const uint64_t bs = word ^ 0x5C5C5C5C5C5C5C5CULL;
      const bool has_backslash = ((bs - 0x0101010101010101ULL) & ~bs & 0x8080808080808080ULL) != 0;
      if ((word & 0x8080808080808080ULL) == 0 && !has_backslash) {
        i += 8;
        continue;
      }
    }
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '\\') {
      const long unit = escape_unit(s, i);
      if (unit >= 0xD800 && unit <= 0xDBFF) {
        const long next = escape_unit(s, i + 6);
        if (next >= 0xDC00 && next <= 0xDFFF) {
          i += 12;
        } else {
          fix(i, 6, "\\ufffd");
          i += 6;
        }
      } else if (unit >= 0xDC00 && unit <= 0xDFFF) {
        fix(i, 6, "\\ufffd");
        i += 6;
      } else {
        i += 2;  // any other escape (its second byte is never the start of one)
      }
      continue;
    }
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t bad = 0;
    const size_t n = utf8_sequence(s, i, bad);
    if (n > 0) {
      i += n;
    } else {
      fix(i, bad, kReplacement);
      i += bad;
    }
  }
  if (out) out->append(s.data() + copied, s.size() - copied);
  return out;
}

std::vector<std::string_view> split_json_string_body(std::string_view body, size_t max_bytes) {
  std::vector<std::string_view> pieces;
  if (max_bytes == 0) max_bytes = 1;
  size_t start = 0;
  while (body.size() - start > max_bytes) {
    size_t cut = start + max_bytes;
    // Back off to the start of a UTF-8 character.
    while (cut > start && (static_cast<unsigned char>(body[cut]) & 0xC0) == 0x80) --cut;
    // An escape is at most `\uXXXX` (6 bytes); a cut within one moves to its start. The
    // backslash that begins an escape is preceded by an even run of backslashes.
    for (size_t back = 1; back <= 5 && back <= cut - start; ++back) {
      const size_t at = cut - back;
      if (body[at] != '\\') continue;
      size_t run = 0;
      while (at - run > start && body[at - run - 1] == '\\') ++run;
      if (run % 2 != 0) continue;  // this backslash is itself escaped
      const size_t len = at + 1 < body.size() && body[at + 1] == 'u' ? 6 : 2;
      if (at + len > cut) cut = at;
      break;
    }
    if (cut == start) cut = start + max_bytes;  // cannot happen with max_bytes >= 6
    pieces.push_back(body.substr(start, cut - start));
    start = cut;
  }
  if (start < body.size() || pieces.empty()) pieces.push_back(body.substr(start));
  return pieces;
}

}  // namespace execd::jupyter
