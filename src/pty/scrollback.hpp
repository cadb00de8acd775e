#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include "core/unique_fd.hpp"

namespace execd::pty {

/// A terminal's output with absolute byte offsets (offset 0 is the first byte the shell
/// ever wrote), for live readers and for replay from any offset still kept.
///
/// The newest `memory_bytes` stay in memory; older bytes move to unlinked temp files in
/// segments of a quarter of `disk_bytes`, and the oldest segment is dropped once the files
/// pass `disk_bytes` (a shell running `yes` for an hour costs a bounded amount of disk, not
/// the disk). Reads before the oldest kept byte start at the oldest kept byte, and say so
/// in their offset. Each byte carries its channel (1 stdout, 2 stderr in pipe mode): a read
/// returns bytes of one channel only. One writer, any number of readers, all thread-safe.
class Scrollback {
 public:
  struct Options {
    size_t memory_bytes = 256 * 1024;
    uint64_t disk_bytes = 64ull << 20;  ///< 0: nothing is spilled, older bytes are dropped
    std::string spill_dir;              ///< empty: $TMPDIR or /tmp
  };
  struct Chunk {
    uint64_t offset = 0;  ///< of bytes[0]; past the asked offset when older bytes are gone
    uint8_t channel = 1;
    std::string bytes;  ///< empty at the end
  };

  explicit Scrollback(Options options);

  void append(uint8_t channel, std::string_view bytes);
  /// Up to `max` bytes from `offset` (or from begin() when older), all of one channel.
  [[nodiscard]] Chunk read(uint64_t offset, size_t max) const;
  /// The oldest offset still kept, and the offset after the newest byte.
  [[nodiscard]] uint64_t begin() const;
  [[nodiscard]] uint64_t end() const;
  /// Waits up to `timeout` until end() > offset or close(); true when end() > offset.
  bool wait_beyond(uint64_t offset, std::chrono::milliseconds timeout) const;
  /// Wakes every waiter now (a reader that must look at something else).
  void notify() const { cv_.notify_all(); }
  /// No more output (the shell exited and its output was drained); wakes waiters.
  void close();
  [[nodiscard]] bool is_closed() const;
  /// Bytes in memory and on disk now (for tests of the bounds).
  [[nodiscard]] size_t memory_bytes() const;
  [[nodiscard]] uint64_t disk_bytes() const;

 private:
  struct Segment {
    uint64_t start = 0;
    uint64_t size = 0;
    core::UniqueFd fd;
  };
  void spill_locked(size_t n);  // moves the oldest n bytes of mem_ to disk (or drops them)
  uint64_t begin_locked() const;

  Options options_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::string mem_;  // bytes [mem_start_, end_)
  uint64_t mem_start_ = 0;
  uint64_t end_ = 0;
  std::deque<Segment> segments_;  // on disk, oldest first, contiguous up to mem_start_
  uint64_t disk_total_ = 0;
  std::deque<std::pair<uint64_t, uint8_t>> runs_;  // (start offset, channel), oldest first
  bool closed_ = false;
  bool spill_failed_logged_ = false;
};

}  // namespace execd::pty
