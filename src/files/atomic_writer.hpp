#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/background_closer.hpp"
#include "core/result.hpp"
#include "core/unique_fd.hpp"
#include "files/disk_quota.hpp"
#include "files/path_resolver.hpp"

namespace execd::files {

/// Ownership and mode to apply to a written file; absent fields leave the default (or,
/// for an existing target, what it had).
struct FileAttributes {
  std::optional<mode_t> mode;
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
};

/// Writes a file the only way that never loses data: into a temp file beside the target
/// (same directory, so the final rename is atomic), fsynced, then renamed over it. Until
/// commit() the target is untouched; a writer destroyed without commit() removes its
/// temp file, so an aborted upload leaves neither a partial file nor a changed one.
///
/// Speed: writes are batched 64 KiB at a time, writeback is started every 256 KiB as
/// the bytes arrive (so the fsync in commit() waits for little), and the file a commit
/// replaces is released through `closer`, off the caller's path.
class AtomicWriter {
 public:
  /// Creates missing parent directories; refuses a target that is a directory.
  /// `max_bytes` 0: unlimited; past it write() fails with too_large. `closer` (may be
  /// null: closed inline) gets the replaced file after commit(). `quota` (may be null):
  /// bytes beyond the size of the file being replaced are reserved ahead of the writes
  /// (1 MiB at a time, exactly what is asked near the limit; past it write() fails with
  /// no_space), settled at commit() to the new size minus the replaced file's, and
  /// refunded by abort().
  static core::Result<AtomicWriter> open(const PathResolver& resolver, const std::string& user_path,
                                         uint64_t max_bytes = 0, core::BackgroundCloser* closer = nullptr,
                                         DiskQuota* quota = nullptr);
  AtomicWriter(AtomicWriter&&) noexcept;
  AtomicWriter& operator=(AtomicWriter&&) noexcept;
  ~AtomicWriter();

  core::Result<void> write(std::string_view bytes);
  /// Appends what `fd` holds from its current offset to the end (a spooled part).
  core::Result<void> copy_from(int fd);
  [[nodiscard]] uint64_t written() const { return written_; }
  [[nodiscard]] const std::string& path() const { return target_.abs; }
  /// fsync, attributes, rename into place.
  core::Result<void> commit(const FileAttributes& attrs);
  /// Drops the temp file (also what the destructor does before commit).
  void abort();

 private:
  AtomicWriter() = default;
  core::Result<void> flush();
  /// Makes the quota reservation cover `total` bytes.
  core::Result<void> reserve(uint64_t total);
  core::Result<void> write_fd(std::string_view bytes);
  /// Starts writeback of what reached the temp file since the last start, once that is
  /// kWritebackEvery or more.
  void start_writeback();
  static constexpr size_t kBuffer = 64 * 1024;
  static constexpr uint64_t kWritebackEvery = 256 * 1024;
  static constexpr uint64_t kReserveStep = 1 << 20;

  ResolvedPath target_;
  std::string temp_name_;
  core::UniqueFd fd_;
  uint64_t written_ = 0;  // accepted bytes, buffered ones included
  uint64_t writeback_started_ = 0;  // bytes of the temp file whose writeback has started
  core::BackgroundCloser* closer_ = nullptr;
  std::string buffer_;
  uint64_t max_bytes_ = 0;
  DiskQuota* quota_ = nullptr;
  std::optional<DiskQuota::Charge> charge_;  // what the quota holds for this write
  uint64_t reserved_ = 0;
  bool done_ = true;
};

}  // namespace execd::files
