#pragma once

#include <string>

#include "core/unique_fd.hpp"

namespace execd::core {

/// A read-write temp file that has no name: O_TMPFILE in `dir` (empty: $TMPDIR or /tmp),
/// or, where the filesystem lacks it, a mkostemp file unlinked at once. Gone with the
/// last close, even after a crash. Invalid (errno set) when neither works.
UniqueFd open_unlinked_temp(const std::string& dir);

}  // namespace execd::core
