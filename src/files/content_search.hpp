#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "files/path_resolver.hpp"

namespace execd::files {

/// What to look for and where (GET /files/grep).
struct GrepQuery {
  std::string path;          ///< a directory (searched recursively) or one file
  std::string pattern;       ///< RE2 syntax, or a literal when `fixed`
  std::string glob;          ///< only files whose base name (or, with a `/`, relative path) matches
  bool fixed = false;
  bool ignore_case = false;
  bool gitignore = false;    ///< honour .gitignore files (and skip .git) below `path`
  int context = 0;           ///< lines before and after each match (0..kMaxContext)
  size_t max_results = 1000;
  uint64_t max_bytes_per_file = 64ull << 20;  ///< the rest of a longer file is not searched
  uint64_t max_total_bytes = 4ull << 30;      ///< bytes read over the whole search
  std::chrono::milliseconds timeout{10000};

  static constexpr int kMaxContext = 50;
  static constexpr size_t kMaxResults = 100000;
};

/// One matching line.
struct GrepMatch {
  std::string path;     ///< absolute
  uint64_t line = 0;    ///< 1-based
  uint64_t column = 0;  ///< 1-based byte offset of the match in the line
  std::string text;     ///< the line without its end; at most kMaxLineBytes around the match
  bool text_cut = false;
  std::vector<std::string> before;  ///< context lines, nearest last
  std::vector<std::string> after;

  static constexpr size_t kMaxLineBytes = 4096;
};

/// How a search went. `truncated` when a bound cut it: `truncated_by` names the first
/// ("max_results", "timeout", "max_total_bytes", "max_bytes_per_file").
struct GrepSummary {
  uint64_t matches = 0;
  uint64_t files_searched = 0;
  uint64_t files_binary = 0;  ///< skipped: a NUL byte in the first block
  uint64_t bytes_searched = 0;
  bool truncated = false;
  std::string truncated_by;
  bool cancelled = false;  ///< the consumer stopped it (client gone)
};

/// Content search over real trees, as fast as the best command-line tools. The calling
/// thread walks the tree (GrepWalker: descriptors, O_NOFOLLOW, no loops, no pseudo
/// filesystems) and hands each file to a small pool of worker threads, which search it
/// (FileGrep: large reads into a reused buffer, a fast literal scan before any regular
/// expression, binary files skipped) and hold its matches until the calling thread delivers
/// them. Matches are delivered in walk order (entries by name, a directory's files in that
/// order, matches in file order), the same order and the same results whatever the number
/// of threads, unless a bound cut the search: on `max_total_bytes` or `timeout` the files
/// delivered are a prefix of that order, which prefix may differ between runs.
///
/// Memory stays bounded whatever the tree and however slowly `on_match` returns: at most
/// kFilesInFlight files are ahead of the one being delivered (a file waiting for a worker
/// costs its name; only files being searched are open), workers hold at most kHeldBytes
/// of matches in all (a file whose matches would pass an eighth of that, or the total, is
/// searched again by the calling thread, which streams them to `on_match`), and each thread
/// reads into one 1 MiB buffer (more only for a longer line). A slow consumer therefore
/// stalls the walk and the workers (backpressure).
///
/// run() calls `on_match` on the calling thread; returning false stops the search (the
/// consumer went away). Stateless between runs; any thread.
class ContentSearch {
 public:
  static constexpr size_t kFilesInFlight = 256;
  static constexpr size_t kHeldBytes = 4u << 20;

  /// `workers`: threads searching files besides the calling thread; 0 searches on the
  /// calling thread alone. The default is the number of cores, between 2 and 4.
  explicit ContentSearch(const PathResolver& resolver, unsigned workers = default_workers())
      : resolver_(resolver), workers_(workers) {}

  static unsigned default_workers();

  /// The checks run() starts with (bounds, pattern, path), without searching: lets a
  /// caller answer an error before it commits to a stream.
  core::Result<void> check(const GrepQuery& query) const;

  /// invalid_argument for a pattern RE2 rejects (its message), a bad bound or context;
  /// file_not_found / forbidden for the path; internal when a worker failed (out of
  /// memory). `stop` (may be null) ends the search early (GrepSummary::cancelled).
  core::Result<GrepSummary> run(const GrepQuery& query, const std::function<bool(const GrepMatch&)>& on_match,
                                const std::atomic<bool>* stop = nullptr) const;

 private:
  const PathResolver& resolver_;
  unsigned workers_;
};

}  // namespace execd::files
