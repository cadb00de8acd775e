#pragma once

#include <functional>
#include <string>

#include "core/result.hpp"
#include "core/unique_fd.hpp"

namespace execd::core {

/// The running daemon's own directory for what must not outlive it (kernel connection
/// files, spill files, records of started process groups): `<base>/execd-<pid>-<random>`,
/// mode 0700, with `lock` in it held by flock(LOCK_EX) for the daemon's whole life (the
/// descriptor is CLOEXEC, so no child keeps a dead daemon's lock).
///
/// create() first sweeps `<base>`: every sibling `execd-*` whose lock nobody holds was left
/// by a daemon that died without cleaning up; `on_stale` sees its path (to end processes
/// recorded there) and then it is removed. Two daemons sharing a base never touch each
/// other's directory. Not thread-safe during create(); path() is immutable afterwards.
class RuntimeDir {
 public:
  using StaleHook = std::function<void(const std::string& stale_path)>;

  /// `base` is created 0700 if missing and must then be a directory owned by this user
  /// and not writable by others (a directory planted by another user is refused).
  static Result<RuntimeDir> create(const std::string& base, const StaleHook& on_stale = {});

  /// `$TMPDIR` (or /tmp) + `/execd-<uid>`: the default base.
  static std::string default_base();

  RuntimeDir(RuntimeDir&&) = default;
  RuntimeDir& operator=(RuntimeDir&&) = default;
  /// Removes the directory and everything in it (a clean shutdown).
  ~RuntimeDir();

  [[nodiscard]] const std::string& path() const { return path_; }
  /// `<path>/<name>`, created 0700 on first use.
  [[nodiscard]] Result<std::string> subdir(const std::string& name) const;

 private:
  RuntimeDir(std::string path, UniqueFd lock) : path_(std::move(path)), lock_(std::move(lock)) {}
  std::string path_;
  UniqueFd lock_;
};

}  // namespace execd::core
