#pragma once

#include <string>
#include <string_view>

namespace execd::files {

/// A unified diff (`diff -u` shape: `--- a/<path>`, `+++ b/<path>`, `@@ -l,n +l,n @@`
/// hunks with `context` lines around each change) between two texts, line by line. Lines
/// keep their own endings, so a CRLF file diffs as CRLF; a last line without a newline
/// gets `\ No newline at end of file`. Empty when the texts are equal.
///
/// Common leading and trailing lines are trimmed first; the rest is diffed with Myers'
/// algorithm up to `max_edit_distance` changed lines, past which the middle is shown as
/// one replaced block (still a correct diff, just not a minimal one), so a rewrite of a
/// huge file costs linear time and memory.
std::string unified_diff(std::string_view path, std::string_view before, std::string_view after, int context = 3,
                         int max_edit_distance = 4096);

}  // namespace execd::files
