#pragma once

#include <fcntl.h>

#include <string>

#include "core/result.hpp"
#include "core/unique_fd.hpp"

namespace execd::files {

/// A path taken apart for the *at() syscalls: an O_PATH descriptor of its parent
/// directory and the last component. Operating on (parent, leaf) instead of the whole
/// path means a symlink swapped into the path after resolution cannot redirect the
/// operation outside the files root.
struct ResolvedPath {
  std::string abs;      ///< absolute, normalised, as the user would see it
  core::UniqueFd parent;
  std::string leaf;     ///< "" when the path is the root itself ("/" or the files root)
};

/// Turns user paths into ResolvedPaths. Paths may be absolute or relative to the
/// daemon's working directory and may start with `~` or use `$VAR`. With a files root,
/// every path must stay inside it: `..`, absolute paths elsewhere and symlinks leading
/// out are all refused with `forbidden` (resolution goes through openat2 with
/// RESOLVE_BENEATH, so the kernel enforces it at each step).
class PathResolver {
 public:
  /// `root` empty: no confinement.
  explicit PathResolver(std::string root = {});

  [[nodiscard]] const std::string& root() const { return root_; }

  /// Normalises `user_path` (expansion, cwd, `.`/`..`) and checks it against the root
  /// lexically; no filesystem access.
  [[nodiscard]] core::Result<std::string> absolute(const std::string& user_path) const;

  /// The parent directory must exist (file_not_found otherwise).
  [[nodiscard]] core::Result<ResolvedPath> resolve(const std::string& user_path) const;
  /// As resolve(), creating missing parent directories first (mode 0777 & ~umask).
  [[nodiscard]] core::Result<ResolvedPath> resolve_creating_parents(const std::string& user_path) const;

  /// Opens a directory (for reading, or O_PATH) at an absolute path, under the root.
  [[nodiscard]] core::Result<core::UniqueFd> open_dir(const std::string& abs, bool path_only) const;
  /// Opens (parent, leaf) with `flags`; under a files root a symlink leaf may only lead
  /// beneath its own directory. Errors name `p.abs`.
  [[nodiscard]] core::Result<core::UniqueFd> open_at(const ResolvedPath& p, int flags, mode_t mode = 0) const;

 private:
  core::Result<core::UniqueFd> open_beneath(const std::string& abs, int flags) const;

  std::string root_;
};

/// The Error for a failed syscall on `path`: ENOENT -> file_not_found, EACCES/EPERM ->
/// permission_denied, EXDEV/ELOOP (escape) -> forbidden, ENOSPC/EDQUOT -> no_space,
/// ENOTDIR/EISDIR/EEXIST/ENOTEMPTY -> invalid_argument, others internal.
core::Error errno_error(int err, const std::string& what, const std::string& path);

}  // namespace execd::files
