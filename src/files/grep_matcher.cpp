#include "files/grep_matcher.hpp"

#include <cstring>
#include <string>

#include <re2/re2.h>

#include "files/required_literal.hpp"

namespace execd::files {
namespace {

// A shorter literal is too common in text to pay for an RE2 call on every line holding it.
constexpr size_t kMinPrefilter = 2;

bool has_regex_meta(const std::string& p) { return p.find_first_of("\\.^$|?*+()[]{}") != std::string::npos; }

}  // namespace

GrepMatcher::GrepMatcher() = default;
GrepMatcher::~GrepMatcher() = default;

core::Result<void> GrepMatcher::compile(const GrepQuery& q) {
  if (q.pattern.empty()) return core::make_error(core::Errc::invalid_argument, "'pattern' must not be empty");
  const bool literal = q.fixed || !has_regex_meta(q.pattern);
  // A literal is matched by the finder alone unless RE2's case folding reaches beyond
  // ASCII for one of its bytes (then the finder only narrows the lines RE2 looks at).
  const std::string piece = literal ? foldable_piece(q.pattern, q.ignore_case) : required_literal(q.pattern, q.ignore_case);
  if (literal && piece.size() == q.pattern.size()) {
    literal_ = std::make_unique<LiteralFinder>(piece, q.ignore_case);
    return {};
  }
  RE2::Options o;
  o.set_log_errors(false);
  o.set_case_sensitive(!q.ignore_case);
  o.set_literal(q.fixed);
  o.set_never_nl(true);
  o.set_max_mem(64 << 20);
  // (?m): ^ and $ at line boundaries, as grep means them.
  re_ = std::make_unique<RE2>(q.fixed ? q.pattern : "(?m)" + q.pattern, o);
  if (!re_->ok()) return core::make_error(core::Errc::invalid_argument, "bad pattern: " + re_->error());
  if (piece.size() >= kMinPrefilter) literal_ = std::make_unique<LiteralFinder>(piece, q.ignore_case);
  return {};
}

bool GrepMatcher::find(const char* buf, size_t len, size_t from, size_t to, size_t& start, size_t& end) const {
  if (re_ == nullptr) {
    const size_t hit = literal_->find(buf + from, to - from);
    if (hit == LiteralFinder::npos) return false;
    start = from + hit;
    end = start + literal_->size();
    return true;
  }
  const re2::StringPiece text(buf, len);
  re2::StringPiece m;
  if (literal_ == nullptr) {
    if (!re_->Match(text, from, to, RE2::UNANCHORED, &m, 1)) return false;
    start = static_cast<size_t>(m.data() - buf);
    end = start + m.size();
    return true;
  }
  // Only the lines holding the literal can match; each is handed to RE2 alone.
  size_t pos = from;
  while (pos < to) {
    const size_t hit = literal_->find(buf + pos, to - pos);
    if (hit == LiteralFinder::npos) return false;
    const char* h = buf + pos + hit;
    const void* before = ::memrchr(buf + pos, '\n', static_cast<size_t>(h - (buf + pos)));
    const size_t line_start = before != nullptr ? static_cast<size_t>(static_cast<const char*>(before) - buf) + 1 : pos;
    const void* after = std::memchr(h, '\n', static_cast<size_t>(buf + to - h));
    const size_t line_end = after != nullptr ? static_cast<size_t>(static_cast<const char*>(after) - buf) : to;
    if (re_->Match(text, line_start, line_end, RE2::UNANCHORED, &m, 1)) {
      start = static_cast<size_t>(m.data() - buf);
      end = start + m.size();
      return true;
    }
    pos = line_end + 1;
  }
  return false;
}

}  // namespace execd::files
