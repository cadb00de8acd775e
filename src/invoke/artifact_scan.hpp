#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace execd::invoke {

/// One file an invocation left in its working directory.
struct Artifact {
  std::string path;     ///< absolute
  uint64_t size = 0;
  std::string sha256;   ///< hex; empty when the file was over the hashing budget
};

/// The regular files below `dir` (symlinks not followed, at most `max_files`, sorted by
/// path), each hashed with SHA-256 while the total hashed stays within `hash_budget`
/// bytes (a larger file is listed without a hash, so a handler writing gigabytes cannot
/// hold the result up for minutes).
std::vector<Artifact> scan_artifacts(const std::string& dir, size_t max_files, uint64_t hash_budget);

}  // namespace execd::invoke
