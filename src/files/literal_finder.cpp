#include "files/literal_finder.hpp"

#include <cstring>
#include <string_view>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace execd::files {
namespace {

char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/// How common a byte is in text and source code, roughly (higher: more common). Anchoring
/// on the rarest bytes of the needle keeps false candidates few.
int commonness(char c) {
  static constexpr std::string_view kLetters = "etaoinsrhldcumfpgwybvkxjqz";  // most common first
  const auto u = static_cast<unsigned char>(c);
  if (c == ' ') return 255;
  if (c >= 'a' && c <= 'z') return 250 - 4 * static_cast<int>(kLetters.find(c));
  if (c == '\t') return 180;
  if (std::string_view("_.,()=;-/*\"':").find(c) != std::string_view::npos) return 130;
  if (c >= '0' && c <= '9') return 110;
  if (c >= 'A' && c <= 'Z') return 90;
  if (u >= 0x80) return 60;
  if (u >= 0x20) return 70;
  return 20;
}

}  // namespace

LiteralFinder::LiteralFinder(std::string needle, bool ascii_fold) : needle_(std::move(needle)), fold_(ascii_fold) {
  if (fold_) {
    for (auto& c : needle_) c = ascii_lower(c);
  }
  // The rarest byte, then the rarest at another offset.
  for (size_t i = 1; i < needle_.size(); ++i) {
    if (commonness(needle_[i]) < commonness(needle_[off1_])) off1_ = i;
  }
  off2_ = off1_;
  for (size_t i = 0; i < needle_.size(); ++i) {
    if (i != off1_ && (off2_ == off1_ || commonness(needle_[i]) < commonness(needle_[off2_]))) off2_ = i;
  }
  if (off2_ < off1_) std::swap(off1_, off2_);
}

bool LiteralFinder::equal_at(const char* p) const {
  if (!fold_) return std::memcmp(p, needle_.data(), needle_.size()) == 0;
  for (size_t i = 0; i < needle_.size(); ++i) {
    if (ascii_lower(p[i]) != needle_[i]) return false;
  }
  return true;
}

size_t LiteralFinder::find(const char* hay, size_t n) const {
  const size_t k = needle_.size();
  if (n < k) return npos;
  const size_t last = n - k;  // the last possible start
  if (k == 1 && !fold_) {
    const void* hit = std::memchr(hay, needle_[0], n);
    return hit == nullptr ? npos : static_cast<size_t>(static_cast<const char*>(hit) - hay);
  }
  const char b1 = needle_[off1_];
  const char b2 = needle_[off2_];
  // Folding: a letter is compared with its 0x20 bit set (its lower case); a non-letter that
  // the OR turns into the letter is only a false candidate, rejected by equal_at().
  const char or1 = fold_ && is_alpha(b1) ? 0x20 : 0;
  const char or2 = fold_ && is_alpha(b2) ? 0x20 : 0;
  size_t p = 0;
#if defined(__SSE2__)
  const __m128i a1 = _mm_set1_epi8(b1);
  const __m128i a2 = _mm_set1_epi8(b2);
  const __m128i m1 = _mm_set1_epi8(or1);
  const __m128i m2 = _mm_set1_epi8(or2);
  // Sixteen candidate starts p..p+15 at a time; both loads stay inside hay.
  while (p + off2_ + 16 <= n) {
    const __m128i x = _mm_or_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(hay + p + off1_)), m1);
    const __m128i y = _mm_or_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(hay + p + off2_)), m2);
    auto mask = static_cast<unsigned>(_mm_movemask_epi8(_mm_and_si128(_mm_cmpeq_epi8(x, a1), _mm_cmpeq_epi8(y, a2))));
    while (mask != 0) {
      const size_t c = p + static_cast<size_t>(__builtin_ctz(mask));
      if (c > last) return npos;
      if (equal_at(hay + c)) return c;
      mask &= mask - 1;
    }
    p += 16;
  }
#endif
  for (; p <= last; ++p) {
    if (static_cast<char>(hay[p + off1_] | or1) == b1 && static_cast<char>(hay[p + off2_] | or2) == b2 && equal_at(hay + p)) return p;
  }
  return npos;
}

}  // namespace execd::files
