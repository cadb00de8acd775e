#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.hpp"
#include "files/path_resolver.hpp"

namespace execd::files {

class DiskQuota;

/// An archive entry's name made safe to join to the destination: relative, `.` parts
/// and a trailing `/` dropped, no `..`, no absolute path, no NUL; forbidden otherwise.
core::Result<std::string> safe_entry_path(std::string_view name);

/// Unpacks an archive (tar, tar.gz, zip, anything libarchive reads) into a directory
/// (POST /files/extract), refusing what would escape it: every entry is checked before
/// anything is written (a first pass over the headers), so an archive with one bad entry
/// (`../x`, `/etc/x`, a symlink or hardlink leading out) writes nothing. The declared
/// sizes and entry count are checked in that pass too, so a zip bomb is refused
/// (too_large, 413) before the disk fills, and the bytes actually inflated are counted
/// again while writing, so an entry that lies about its size is cut off there. Files are
/// written through AtomicWriter under a resolver rooted at the destination
/// (RESOLVE_BENEATH: a symlink made by an earlier entry cannot redirect a later one);
/// each file appears whole or not at all. Modes are kept without setuid/setgid.
class ArchiveExtract {
 public:
  struct Limits {
    uint64_t max_bytes = 4ull << 30;
    uint64_t max_entries = 100000;
  };
  struct Stats {
    uint64_t files = 0;
    uint64_t directories = 0;
    uint64_t links = 0;
    uint64_t bytes = 0;
  };

  /// `quota` may be null. The declared sizes must fit it before anything is written;
  /// each file written is then charged as it is written (AtomicWriter).
  ArchiveExtract(const PathResolver& resolver, Limits limits, DiskQuota* quota = nullptr)
      : resolver_(resolver), limits_(limits), quota_(quota) {}

  /// `archive_fd`: a seekable file holding the archive (read twice). `dest` is created
  /// when missing.
  core::Result<Stats> extract(int archive_fd, const std::string& dest) const;

 private:
  const PathResolver& resolver_;
  Limits limits_;
  DiskQuota* quota_;
};

}  // namespace execd::files
