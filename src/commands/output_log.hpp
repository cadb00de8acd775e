#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>
#include <string>

#include "core/result.hpp"
#include "core/unique_fd.hpp"

namespace execd::commands {

/// A command's combined stdout+stderr as raw bytes, in write order, for
/// GET /command/{id}/logs?cursor=<byte offset>. The bytes live in an unlinked temp file
/// (page cache, not the daemon's heap), so gigabytes of output keep RSS flat and nothing
/// is lost. One writer (the reactor thread), any number of readers.
class OutputLog {
 public:
  /// `dir` empty: $TMPDIR or /tmp.
  static core::Result<std::unique_ptr<OutputLog>> create(const std::string& dir);

  /// Appends; on a write failure (disk full) the failure is logged once and later bytes
  /// are dropped: the command itself keeps running.
  void append(std::string_view bytes);
  [[nodiscard]] uint64_t size() const { return size_.load(); }
  /// Up to `max` bytes from `offset`; empty at or past the end.
  [[nodiscard]] std::string read(uint64_t offset, size_t max) const;

 private:
  explicit OutputLog(core::UniqueFd fd) : fd_(std::move(fd)) {}
  core::UniqueFd fd_;
  std::atomic<uint64_t> size_{0};
  bool failed_ = false;
};

}  // namespace execd::commands
