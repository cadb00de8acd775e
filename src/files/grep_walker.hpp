#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "files/content_search.hpp"
#include "files/gitignore_rules.hpp"
#include "files/glob_pattern.hpp"

namespace execd::files {

/// The tree walk of a content search: directories are read from descriptors (openat with
/// O_NOFOLLOW below the one it is given, getdents' d_type, no per-entry stat on filesystems
/// that report types), so symlinks are never followed and a loop cannot be entered; entries
/// in byte order of their names; /proc, /sys and similar pseudo filesystems are not
/// entered; the query's glob and, when asked, .gitignore files decide which regular files
/// are handed on, each opened O_NOFOLLOW|O_NONBLOCK relative to its directory. Runs on the
/// calling thread; one walk per GrepWalker.
class GrepWalker {
 public:
  /// Receives each file to search: its open descriptor (the receiver closes it) and its
  /// absolute path; false ends the walk.
  using OnFile = std::function<bool(int fd, std::string abs)>;

  /// `glob`: the query's glob, compiled (null: none). `abs_root`: the searched directory's
  /// absolute path; `files_root` the resolver's root (.gitignore files above the searched
  /// directory are read up to the repository's top, never above it).
  GrepWalker(const GrepQuery& q, const GlobPattern* glob, const std::string& abs_root, const std::string& files_root,
             OnFile on_file);

  /// Walks the directory `fd` (consumed), the searched one. false when on_file ended it.
  bool walk(int fd, dev_t dev);

  struct IgnoreLevel {
    std::string base;  ///< relative dir of the .gitignore ("" for the search root), with a trailing '/'
    GitignoreRules rules;
    std::string prefix;  ///< a parent's .gitignore: the search root's path from its directory, with '/'
  };

 private:
  void dir(int fd, const std::string& abs, const std::string& rel, int depth, dev_t parent_dev);
  bool push_gitignore(int dfd, const std::string& rel);
  bool ignored(const std::string& rel, bool is_dir) const;

  const GrepQuery& q_;
  const GlobPattern* glob_;
  std::string abs_root_;
  OnFile on_file_;
  std::vector<IgnoreLevel> ignores_;
  bool stopped_ = false;
};

}  // namespace execd::files
