#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <string>

#include "core/result.hpp"

namespace execd::files {

/// One entry as the contract reports it (compat-notes §6): symlinks are reported, not
/// followed; `mode` is the permission bits as octal digits read as a decimal number
/// (0644 -> 644).
struct FileInfo {
  std::string path;
  std::string type;  ///< file, directory, symlink, other
  uint64_t size = 0;
  int64_t modified_ns = 0;  ///< mtime, ns since the epoch
  int64_t changed_ns = 0;   ///< ctime (the contract calls it created_at)
  std::string owner;        ///< user name, or the uid as text
  std::string group;        ///< group name, or the gid as text
  int mode = 0;             ///< e.g. 755
};

/// FileInfo from an lstat result.
FileInfo file_info(const std::string& abs, const struct stat& st);
/// lstat of (dirfd, name) into a FileInfo; errors name `abs`.
core::Result<FileInfo> stat_info(int dirfd, const std::string& name, const std::string& abs);

/// 755 -> 0755; invalid_argument for digits 8/9 or more than 4 digits.
core::Result<mode_t> mode_from_digits(int64_t digits);

/// uid of a user name (or decimal id), gid of a group name (or decimal id).
core::Result<uid_t> uid_of(const std::string& user);
core::Result<gid_t> gid_of(const std::string& group);

}  // namespace execd::files
