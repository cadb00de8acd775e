#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "core/result.hpp"
#include "core/temp_file.hpp"

namespace execd::commands {

/// A command's combined stdout+stderr as raw bytes, in write order, for
/// GET /command/{id}/logs?cursor=<byte offset>. The first kInMemory bytes stay in memory;
/// past that everything moves to a temp file (page cache, not the daemon's heap), so
/// gigabytes of output keep RSS flat and nothing is lost, while the common short command
/// never pays for creating a file (inode allocation dominated the cost of a command
/// start). Once sealed (the command ended) it holds no descriptor: reads reopen the file
/// (core::ReopenableFile), so retained commands cost none. One writer (the reactor
/// thread), which also seals; any number of readers.
class OutputLog {
 public:
  static constexpr size_t kInMemory = 16 * 1024;

  /// `dir`: where the temp file goes once needed; empty: $TMPDIR or /tmp.
  explicit OutputLog(std::string dir) : dir_(std::move(dir)) {}

  /// Appends; on a failure to spill or write (disk full) the failure is logged once and
  /// later bytes are dropped: the command itself keeps running.
  void append(std::string_view bytes);
  [[nodiscard]] uint64_t size() const { return size_.load(); }
  /// Up to `max` bytes from `offset`; empty at or past the end.
  [[nodiscard]] std::string read(uint64_t offset, size_t max) const;
  /// No more output: gives up the file's descriptor (reads reopen it).
  void seal();
  /// True while a descriptor is held (for tests).
  [[nodiscard]] bool holds_descriptor() const;

 private:
  bool spill();  // called with mu_ held

  std::string dir_;
  mutable std::mutex mu_;   // guards head_ and the switch to the file
  std::string head_;        // all bytes while not spilled
  std::unique_ptr<core::ReopenableFile> file_;  // set once, when spilled; never changes after
  std::atomic<bool> spilled_{false};
  std::atomic<uint64_t> size_{0};
  bool failed_ = false;     // writer only
};

}  // namespace execd::commands
