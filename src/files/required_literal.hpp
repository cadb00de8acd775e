#pragma once

#include <string>
#include <string_view>

namespace execd::files {

/// A byte string that every match of the RE2 `pattern` contains ("_MAX" for `\w+_MAX\b`),
/// so a search can look for it with a fast literal scan and run the regular expression only
/// on the lines where it occurs, as ripgrep does. Empty when none is known: the analysis is
/// deliberately conservative (a top-level `|`, inline flags, `\Q`, or anything it does not
/// fully understand gives none), because a wrong literal would lose matches.
///
/// With `ignore_case` the literal is to be compared ignoring ASCII case only: it then never
/// holds a byte that RE2's Unicode case folding also matches outside ASCII (k, s: the
/// Kelvin sign and the long s) nor any non-ASCII byte. Pure function.
std::string required_literal(std::string_view pattern, bool ignore_case);

/// The longest piece of `literal` that an ASCII-case-insensitive comparison matches exactly
/// as RE2's case folding does (no k, s or non-ASCII byte); `literal` itself without
/// `ignore_case`. Pure function.
std::string foldable_piece(std::string_view literal, bool ignore_case);

}  // namespace execd::files
