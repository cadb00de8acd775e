#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/result.hpp"
#include "core/unique_fd.hpp"
#include "files/path_resolver.hpp"

namespace execd::files {

/// One change seen under a watched directory.
struct WatchEvent {
  std::string type;   ///< created, modified, deleted, moved_from, moved_to, overflow
  std::string path;   ///< absolute
  std::string from;   ///< moved_to: where it came from, when that was inside the watch
  std::string kind;   ///< file, directory, symlink, other ("" when gone)
  int64_t size = -1;  ///< bytes, for files that still exist
};

/// Watches a directory (recursively if asked) with inotify and reports changes in
/// batches: events of one burst (within `coalesce` of each other, at most 1 s) are merged
/// per path (created+modified -> created, created+deleted -> nothing, repeated modified ->
/// one), so a compiler writing a file in a thousand writes is one event. Directories
/// created (or moved in) later are watched as they appear, and what they already hold is
/// reported as created. Each directory is added through an O_PATH descriptor opened
/// beneath the files root (/proc/self/fd/N), so a symlink swapped in cannot widen the
/// watch; symlinks are reported, never followed.
///
/// One thread per watch reads inotify and calls `on_events` (with a batch) and, once,
/// `on_end` (why it ended: "deleted" or "moved" when the watched directory goes,
/// "limit" never: over `max_dirs` directories the rest are left unwatched and an
/// `overflow` event says so). The destructor stops the thread; callbacks are never called
/// after it returns.
class FileWatch {
 public:
  struct Options {
    bool recursive = true;
    size_t max_dirs = 8192;
    std::chrono::milliseconds coalesce{50};
  };
  using EventsFn = std::function<void(std::vector<WatchEvent>)>;
  using EndFn = std::function<void(const std::string& reason)>;

  /// file_not_found / forbidden for the path, invalid_argument when it is not a
  /// directory, unavailable when inotify refuses (instances or watches exhausted).
  static core::Result<std::unique_ptr<FileWatch>> start(const PathResolver& resolver, const std::string& path,
                                                        Options options, EventsFn on_events, EndFn on_end);
  ~FileWatch();
  FileWatch(const FileWatch&) = delete;
  FileWatch& operator=(const FileWatch&) = delete;

  [[nodiscard]] const std::string& path() const;
  /// Directories being watched now.
  [[nodiscard]] size_t watched_dirs() const;

  struct State;

 private:
  explicit FileWatch(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
  std::thread thread_;
};

}  // namespace execd::files
