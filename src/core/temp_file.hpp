#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "core/unique_fd.hpp"

namespace execd::core {

/// A read-write temp file that has no name: O_TMPFILE in `dir` (empty: $TMPDIR or /tmp),
/// or, where the filesystem lacks it, a mkostemp file unlinked at once. Gone with the
/// last close, even after a crash. Invalid (errno set) when neither works.
UniqueFd open_unlinked_temp(const std::string& dir);

/// A named temp file for data kept long but read rarely (a finished execution's spilled
/// events or raw output). While it is written it holds one descriptor; seal() gives that
/// up, and readers then open it by name for each read and close it after, so any number
/// of retained files cost no descriptor (10,000 retained commands would otherwise exhaust
/// RLIMIT_NOFILE). The destructor removes the file; one left by a crash lies in the
/// daemon's runtime directory, which the next daemon removes.
///
/// The writer (one thread, which also seals) uses write_fd(); readers on any thread.
class ReopenableFile {
 public:
  /// Creates `dir/execd-XXXXXX` (empty dir: $TMPDIR or /tmp), mode 0600. Null, with
  /// errno set, when it cannot.
  static std::unique_ptr<ReopenableFile> create(const std::string& dir);
  ~ReopenableFile();
  ReopenableFile(const ReopenableFile&) = delete;
  ReopenableFile& operator=(const ReopenableFile&) = delete;

  /// The writer's descriptor; -1 after seal().
  [[nodiscard]] int write_fd() const { return write_fd_.load(std::memory_order_relaxed); }
  /// Closes the writer's descriptor: later reads reopen the file by name.
  void seal();
  /// A descriptor to pread from, held as long as the returned pointer: the writer's while
  /// it is open, else the file opened read-only. Null (errno set) if it cannot be opened.
  [[nodiscard]] std::shared_ptr<const UniqueFd> reader() const;
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  ReopenableFile(std::string path, int fd);

  std::string path_;
  std::atomic<int> write_fd_;  // atomic only so tests may ask holds_descriptor() from anywhere
  mutable std::mutex mu_;
  std::shared_ptr<const UniqueFd> open_;  // the writer's descriptor until seal()
};

}  // namespace execd::core
