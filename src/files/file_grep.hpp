#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "files/content_search.hpp"
#include "files/grep_control.hpp"
#include "files/grep_matcher.hpp"

namespace execd::files {

/// What searching one file gave, beside its matches.
struct FileGrepOutcome {
  uint64_t bytes = 0;           ///< read from the file
  bool binary = false;          ///< a NUL in the first block (64 KiB): not searched
  bool cut_per_file = false;    ///< max_bytes_per_file left part of it unread
  bool out_of_budget = false;   ///< the search's ByteBudget ran out with part of it unread
  bool stopped = false;         ///< the sink refused a match or the control halted: not finished
};

/// Searches one open file: reads it in large blocks into one buffer it owns and reuses
/// (1 MiB, more only for a line longer than that), searches each block whole with the
/// GrepMatcher, and finds line boundaries only around matches. Binary files (a NUL in the
/// first 64 KiB, read alone first) are skipped. One FileGrep per thread; several share the matcher, control
/// and budget.
class FileGrep {
 public:
  /// Receives each match in file order; false stops the file (FileGrepOutcome::stopped).
  using Sink = std::function<bool(GrepMatch&&)>;

  FileGrep(const GrepQuery& q, const GrepMatcher& matcher, GrepControl& control, ByteBudget& budget)
      : q_(q), m_(matcher), control_(control), budget_(budget) {}

  /// Searches `fd` (read from its current offset; not closed) whose absolute path is `abs`.
  FileGrepOutcome search(int fd, const std::string& abs, const Sink& sink);

 private:
  /// A buffer of at least `need` bytes holding the first `used` bytes of the old one.
  void grow(size_t need, size_t used);
  bool has_lines_after(size_t line_end, size_t len, int n) const;
  std::string line_text(size_t start, size_t end, size_t around, bool& cut_flag) const;
  GrepMatch make_match(const std::string& abs, uint64_t line, size_t line_start, size_t line_end, size_t ms, size_t len) const;

  const GrepQuery& q_;
  const GrepMatcher& m_;
  GrepControl& control_;
  ByteBudget& budget_;
  std::unique_ptr<char[]> buf_;
  size_t cap_ = 0;
};

}  // namespace execd::files
