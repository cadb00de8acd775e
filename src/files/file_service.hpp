#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/background_closer.hpp"
#include "core/result.hpp"
#include "files/atomic_writer.hpp"
#include "files/disk_quota.hpp"
#include "files/file_info.hpp"
#include "files/glob_pattern.hpp"
#include "files/path_resolver.hpp"

namespace execd::files {

/// Ownership/mode as requests give them: `mode` as octal digits (0 or absent: leave),
/// owner and group by name (or id; empty: leave).
struct AttributeRequest {
  int64_t mode = 0;
  std::string owner;
  std::string group;
};

/// The files and directories operations of the contract (compat-notes §6), on real
/// paths through a PathResolver. Errors are values; nothing here knows HTTP.
class FileService {
 public:
  /// Walks (list, search, rm -rf) recurse with one descriptor per level; deeper trees
  /// (a user can build them with mkdir/cd loops) are not descended (list, search) or
  /// refused (rm -rf), so no request can exhaust the stack or the descriptor table.
  static constexpr int kMaxWalkDepth = 1024;

  struct Options {
    std::string root;            ///< --files-root; empty: none
    uint64_t max_upload_bytes = 0;
    size_t max_search_results = 10000;
    size_t max_list_entries = 100000;
    std::chrono::milliseconds search_timeout{10000};  ///< --search-timeout
    /// --disk-quota over the root: every write through this service (uploads, tus,
    /// replace, edit, extract) is charged to it, every removal credited. Null: none.
    std::shared_ptr<DiskQuota> quota;
  };

  /// What a search found, and whether (and why) it stopped before the end.
  struct SearchResult {
    enum class Cut { none, results, time };
    std::vector<FileInfo> entries;
    Cut cut = Cut::none;
  };

  explicit FileService(Options options);

  [[nodiscard]] const PathResolver& resolver() const { return resolver_; }
  [[nodiscard]] const Options& options() const { return options_; }
  /// The quota writes are charged to; null when none is set.
  [[nodiscard]] DiskQuota* quota() const { return options_.quota.get(); }

  /// An AtomicWriter for `path` under this service's root (`max_bytes` 0: unlimited);
  /// the files its commit replaces are freed on this service's closer thread.
  core::Result<AtomicWriter> open_writer(const std::string& path, uint64_t max_bytes = 0) const;

  core::Result<FileInfo> info(const std::string& path) const;
  /// Removes files (a missing one is fine); a directory is refused.
  core::Result<void> remove_file(const std::string& path) const;
  /// Renames, creating the destination's parents; an existing destination is a conflict.
  core::Result<void> move(const std::string& src, const std::string& dest) const;
  core::Result<void> set_attributes(const std::string& path, const AttributeRequest& attrs) const;
  /// Literal replace-all; returns how many occurrences there were. The file is rewritten
  /// atomically with its mode and owner kept.
  core::Result<uint64_t> replace(const std::string& path, const std::string& old_text, const std::string& new_text) const;
  /// mkdir -p; attributes apply to the leaf only when it did not exist.
  core::Result<void> make_directories(const std::string& path, const AttributeRequest& attrs) const;
  /// rm -rf (symlinks removed, never followed); missing is fine.
  core::Result<void> remove_tree(const std::string& path) const;
  /// Entries below `path` to `depth` levels, pre-order, lexical per directory; symlinks
  /// reported and never descended.
  core::Result<std::vector<FileInfo>> list(const std::string& path, int depth) const;
  /// Non-directory entries below `path` that match `pattern` (GlobPattern; empty: `**`):
  /// a pattern without `/` matches the base name at any depth, one with `/` the path
  /// relative to `path` (`**/*.txt`, `src/**/*.py`; doublestar's rules), one starting
  /// with `/` the absolute path. Stops after max_search_results entries (cut `results`)
  /// or search_timeout (cut `time`) with what it found so far; a walk deeper than
  /// kMaxWalkDepth levels is not descended further. A bad pattern is invalid_argument.
  core::Result<SearchResult> search(const std::string& path, const std::string& pattern) const;

  /// A regular file opened for reading (download); a directory is invalid_argument.
  struct OpenFile {
    core::UniqueFd fd;
    uint64_t size = 0;
    std::string abs;
    int64_t modified_ns = 0;
    mode_t mode = 0;
    uid_t uid = 0;
    gid_t gid = 0;
  };
  core::Result<OpenFile> open_read(const std::string& path) const;

  /// Attribute values checked and converted (unknown user -> invalid_argument).
  static core::Result<FileAttributes> attributes(const AttributeRequest& req);
  /// `mode` (an integer), `owner` and `group` (strings) of a JSON object, as requests
  /// and upload metadata carry them; absent or null fields are left unset. `subject`
  /// names the object in errors (invalid_argument).
  static core::Result<AttributeRequest> attribute_request(const nlohmann::json& v, const std::string& subject);

 private:
  PathResolver resolver_;
  Options options_;
  std::unique_ptr<core::BackgroundCloser> closer_ = std::make_unique<core::BackgroundCloser>();
};

}  // namespace execd::files
