#pragma once

#include <sys/types.h>

#include <dirent.h>

#include <functional>
#include <memory>
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
/// are handed on, with their directory kept open so that they can be opened relative to it
/// (open_file) on any thread. Runs on the calling thread; one walk per GrepWalker.
class GrepWalker {
 public:
  /// A directory being walked, open as long as the walk or a file handed on needs it.
  class OpenDir {
   public:
    explicit OpenDir(DIR* d) : d_(d) {}
    ~OpenDir() { ::closedir(d_); }
    OpenDir(const OpenDir&) = delete;
    OpenDir& operator=(const OpenDir&) = delete;
    int fd() const { return ::dirfd(d_); }

   private:
    DIR* d_;
  };

  /// Receives each file to search: its directory, its name there and its absolute path;
  /// false ends the walk.
  using OnFile = std::function<bool(const std::shared_ptr<const OpenDir>& dir, const std::string& name, std::string abs)>;

  /// Opens a file handed on, O_NOFOLLOW (a file replaced by a symlink since the directory
  /// was read is not followed) and O_NONBLOCK (nor is a FIFO waited on); -1 on failure.
  static int open_file(const OpenDir& dir, const std::string& name);

  /// `glob`: the query's glob, compiled (null: none). `abs_root`: the searched directory's
  /// absolute path; `files_root` the resolver's root (.gitignore files above the searched
  /// directory are read up to the repository's top, never above it).
  GrepWalker(const GrepQuery& q, const GlobPattern* glob, const std::string& abs_root, const std::string& files_root,
             OnFile on_file);

  /// Walks the directory `fd` (consumed), the searched one, until done or on_file ends it.
  void walk(int fd, dev_t dev);

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
