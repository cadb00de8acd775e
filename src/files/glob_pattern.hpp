#pragma once

#include <bitset>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace execd::files {

/// A compiled glob in doublestar's syntax, matched without backtracking and without
/// expanding braces: the pattern becomes a Thompson NFA (one state per pattern element)
/// that is simulated over the name with a set of live states, so a match costs
/// O(pattern length × name length) whatever the pattern (`{a,b}` fifty times,
/// `*a*a*a…b`).
///
/// Syntax: `*` any run of bytes but `/`; `?` one character but `/` (a UTF-8 sequence
/// counts as one); `[abc]`, `[a-z]`, `[!x]`/`[^x]` one character of (or not of) a set,
/// never `/` (sets are bytes: ASCII ranges are exact); `{a,b,…}` alternatives, nestable;
/// `\x` the byte x. `**` as a whole path component matches zero or more directories:
/// `**/` is "any prefix ending in `/`, or none", a final `**` after `/` (or the whole
/// pattern `**`) matches everything below; `**` elsewhere is `*`. An unclosed `[` or `{`
/// and a stray `}` or `,` are literal bytes, as fnmatch treats them.
///
/// Immutable after compile; safe to share between threads.
class GlobPattern {
 public:
  static constexpr size_t kMaxLength = 4096;   ///< longer patterns are invalid_argument
  static constexpr size_t kMaxBraceDepth = 32;  ///< deeper {…} nesting is invalid_argument

  /// invalid_argument (naming the limit) for a pattern over kMaxLength bytes, with a NUL
  /// byte, or nested deeper than kMaxBraceDepth; every other string compiles.
  static core::Result<GlobPattern> compile(std::string_view pattern);

  /// Whether the whole of `name` matches.
  [[nodiscard]] bool matches(std::string_view name) const;
  /// Whether the pattern holds a `/`, i.e. it is meant for a path rather than a base name.
  [[nodiscard]] bool has_slash() const { return has_slash_; }

  /// One NFA state (public for the compiler in the .cpp; not an interface).
  struct State {
    enum Kind : uint8_t { byte, any_but_slash, any, lead, cont, set, split, match } kind = match;
    uint8_t value = 0;       ///< byte: the byte
    bool negated = false;    ///< set: matches bytes not in the set
    uint32_t set_index = 0;  ///< set: index into sets_
    uint32_t out = 0;        ///< next state
    uint32_t out2 = 0;       ///< split: the other next state
  };

 private:
  GlobPattern() = default;
  friend class GlobCompiler;

  std::vector<State> states_;
  std::vector<std::bitset<256>> sets_;
  uint32_t start_ = 0;
  bool has_slash_ = false;
};

/// Whether `name` matches `pattern` (GlobPattern's rules); a pattern that does not
/// compile matches nothing. Pure; time O(|pattern| × |name|). The fuzzing entry point.
bool glob_match(std::string_view pattern, std::string_view name);

}  // namespace execd::files
