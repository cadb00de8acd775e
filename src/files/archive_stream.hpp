#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "core/result.hpp"
#include "files/path_resolver.hpp"

namespace execd::files {

enum class ArchiveFormat { tar, tar_gz, zip };

/// "tar", "tar.gz" (or "tgz"), "zip"; invalid_argument otherwise.
core::Result<ArchiveFormat> archive_format(std::string_view name);

/// Writes a directory as an archive straight into a sink (GET /files/archive): libarchive's
/// write callbacks hand each block to `sink` as it is made, so there is no temp file and
/// no archive in memory; files are read 64 KiB at a time. Entries are relative to the
/// directory, in name order; modes, mtimes and symlinks are kept (symlinks are stored as
/// links, never followed); sockets and devices are left out. Stateless; any thread.
class ArchiveStream {
 public:
  explicit ArchiveStream(const PathResolver& resolver) : resolver_(resolver) {}

  /// The path must be a directory (file_not_found / forbidden / invalid_argument).
  [[nodiscard]] core::Result<std::string> check(const std::string& path) const;

  struct Stats {
    uint64_t entries = 0;
    uint64_t bytes_in = 0;  ///< file bytes read
  };
  /// `sink` returns false when the consumer is gone: writing stops (unavailable).
  core::Result<Stats> write(const std::string& path, ArchiveFormat format,
                            const std::function<bool(const char*, size_t)>& sink,
                            const std::atomic<bool>* stop = nullptr) const;

 private:
  const PathResolver& resolver_;
};

}  // namespace execd::files
