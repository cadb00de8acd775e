#pragma once

#include <cstddef>
#include <memory>

#include "core/result.hpp"
#include "files/content_search.hpp"
#include "files/literal_finder.hpp"

namespace re2 {
class RE2;
}

namespace execd::files {

/// Finds the matches of a GrepQuery's pattern in a buffer of whole lines. A match never
/// spans a line end (RE2's never_nl), as in grep. When the pattern is a literal, or holds
/// one that every match contains (required_literal), that literal is looked for first with
/// a LiteralFinder and RE2 runs only on the lines where it occurs; otherwise RE2 scans the
/// whole range. RE2 runs in linear time: no pattern can make a search exponential.
/// Immutable after compile(); find() may be called from several threads at once.
class GrepMatcher {
 public:
  GrepMatcher();
  ~GrepMatcher();
  GrepMatcher(const GrepMatcher&) = delete;
  GrepMatcher& operator=(const GrepMatcher&) = delete;

  /// invalid_argument for an empty pattern or one RE2 rejects (its message).
  core::Result<void> compile(const GrepQuery& q);

  /// The first match in buf[from, to), `from` at a line start; buf[0, len) is the context
  /// ^, $ and \b look at. Sets [start, end) of the match.
  bool find(const char* buf, size_t len, size_t from, size_t to, size_t& start, size_t& end) const;

 private:
  std::unique_ptr<LiteralFinder> literal_;  // the prefilter; the whole matcher without re_
  std::unique_ptr<re2::RE2> re_;
};

}  // namespace execd::files
