#pragma once

#include <string>

#include "core/result.hpp"

namespace execd::core {

/// `$VAR` and `${VAR}` replaced from the daemon's environment; invalid_argument naming
/// an undefined variable or an unclosed `${`.
Result<std::string> expand_vars(const std::string& text);

/// A leading `~` (alone or before `/`) becomes $HOME, then expand_vars. How commands,
/// sessions and the files API read paths (compat-notes §3.5, §6).
Result<std::string> expand_path(const std::string& path);

}  // namespace execd::core
