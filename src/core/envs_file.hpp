#pragma once

#include <map>
#include <string>

namespace execd::core {

/// The KEY=VALUE lines of an `--envs-file` (blank lines, `#` comments and lines without a
/// key skipped), each value with `$VAR`s expanded as for commands (kept as written when a
/// variable is undefined). Empty `path` or a file that cannot be read: no variables.
std::map<std::string, std::string> read_envs_file(const std::string& path);

}  // namespace execd::core
