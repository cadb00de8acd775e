#include "files/content_search.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

#include <re2/re2.h>

#include "files/file_service.hpp"
#include "files/gitignore_rules.hpp"

namespace execd::files {
namespace {

constexpr size_t kChunk = 1 << 20;        // one read; most files fit in one
constexpr size_t kMaxLine = 16 << 20;     // a longer "line" is searched in pieces
constexpr int kMaxDepth = 256;
constexpr uint64_t kMaxGitignoreBytes = 1 << 20;

using Clock = std::chrono::steady_clock;

bool is_pseudo_fs(int fd) {
  struct statfs sf {};
  if (::fstatfs(fd, &sf) != 0) return false;
  switch (static_cast<unsigned long>(sf.f_type)) {
    case PROC_SUPER_MAGIC: case SYSFS_MAGIC: case DEVPTS_SUPER_MAGIC: case CGROUP_SUPER_MAGIC:
    case CGROUP2_SUPER_MAGIC: case DEBUGFS_MAGIC: case TRACEFS_MAGIC: case SECURITYFS_MAGIC:
    case BPF_FS_MAGIC: case 0x65735543 /* fusectl */: case 0x62656570 /* configfs */:
      return true;
    default:
      return false;
  }
}

bool has_regex_meta(const std::string& p) { return p.find_first_of("\\.^$|?*+()[]{}") != std::string::npos; }

/// Finds the next match in [from, to) of a buffer: memmem for literals, RE2 otherwise.
class Matcher {
 public:
  core::Result<void> compile(const GrepQuery& q) {
    if (q.pattern.empty()) return core::make_error(core::Errc::invalid_argument, "'pattern' must not be empty");
    if ((q.fixed || !has_regex_meta(q.pattern)) && !q.ignore_case) {
      literal_ = q.pattern;
      return {};
    }
    RE2::Options o;
    o.set_log_errors(false);
    o.set_case_sensitive(!q.ignore_case);
    o.set_literal(q.fixed);
    o.set_max_mem(64 << 20);
    // (?m): ^ and $ at line boundaries, as grep means them.
    re_ = std::make_unique<RE2>(q.fixed ? q.pattern : "(?m)" + q.pattern, o);
    if (!re_->ok()) return core::make_error(core::Errc::invalid_argument, "bad pattern: " + re_->error());
    return {};
  }

  bool find(const char* buf, size_t len, size_t from, size_t to, size_t& start, size_t& end) const {
    if (re_ == nullptr) {
      const void* hit = ::memmem(buf + from, to - from, literal_.data(), literal_.size());
      if (hit == nullptr) return false;
      start = static_cast<size_t>(static_cast<const char*>(hit) - buf);
      end = start + literal_.size();
      return true;
    }
    re2::StringPiece m;
    if (!re_->Match(re2::StringPiece(buf, len), from, to, RE2::UNANCHORED, &m, 1)) return false;
    start = static_cast<size_t>(m.data() - buf);
    end = start + m.size();
    return true;
  }

 private:
  std::string literal_;
  std::unique_ptr<RE2> re_;
};

struct IgnoreLevel {
  std::string base;  // relative dir of the .gitignore ("" for the search root), with a trailing '/'
  GitignoreRules rules;
  std::string prefix;  // a parent's .gitignore: the search root's path from its directory, with '/'
};

/// Reads a .gitignore (bounded); empty rules when there is none.
GitignoreRules read_gitignore(int dfd) {
  const int f = ::openat(dfd, ".gitignore", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (f < 0) return {};
  std::string text;
  char block[8192];
  for (;;) {
    const ssize_t n = ::read(f, block, sizeof block);
    if (n <= 0 || text.size() + static_cast<size_t>(n) > kMaxGitignoreBytes) break;
    text.append(block, static_cast<size_t>(n));
  }
  ::close(f);
  return GitignoreRules::parse(text);
}

/// The .gitignore files of the directories above `abs` (a directory being searched) up
/// to the repository's top (the nearest one holding `.git`), outermost first, as git
/// applies them; none when `abs` is not inside a repository, or is its top. Never looks
/// above `root` (the files root; empty: none).
std::vector<IgnoreLevel> parent_gitignores(const std::string& abs, const std::string& root) {
  std::vector<IgnoreLevel> levels;
  auto has_git = [](const std::string& dir) {
    struct stat st {};
    return ::fstatat(AT_FDCWD, (dir + "/.git").c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
  };
  if (abs.empty() || has_git(abs)) return levels;
  std::string dir = abs;
  std::string below;  // the search root relative to `dir`
  while (dir.size() > 1) {
    if (!root.empty() && root != "/" && dir == root) return {};  // the jail's top, no repository
    const auto slash = dir.rfind('/');
    below = dir.substr(slash + 1) + "/" + below;
    dir = slash == 0 ? std::string("/") : dir.substr(0, slash);
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return {};
    auto rules = read_gitignore(dfd);
    ::close(dfd);
    if (!rules.empty()) levels.insert(levels.begin(), IgnoreLevel{"", std::move(rules), below});
    if (has_git(dir)) return levels;
  }
  return {};
}

class Search {
 public:
  Search(const GrepQuery& q, const Matcher& m, const std::function<bool(const GrepMatch&)>& on_match,
         const std::atomic<bool>* stop)
      : q_(q), m_(m), on_match_(on_match), stop_(stop), deadline_(Clock::now() + q.timeout) {}

  GrepSummary summary;

  /// false: stop the whole search (a bound was hit or the consumer left).
  bool file(int fd, const std::string& abs) {
    if (!time_left()) return false;
    ++summary.files_searched;
    size_t len = 0;
    size_t scan = 0;
    size_t counted_off = 0;
    uint64_t counted_line = 1;
    uint64_t file_bytes = 0;
    bool first = true;
    bool eof = false;
    for (;;) {
      if (!eof) {
        if (cap_ < len + kChunk) grow(len + kChunk);
        uint64_t want = cap_ - len;
        want = std::min<uint64_t>(want, q_.max_bytes_per_file - file_bytes);
        const uint64_t total_left = q_.max_total_bytes - summary.bytes_searched;
        if (want == 0 || total_left == 0) {
          char probe;
          if (::pread(fd, &probe, 1, static_cast<off_t>(file_bytes)) == 1) {
            cut(total_left == 0 ? "max_total_bytes" : "max_bytes_per_file");
            if (total_left == 0) stop_all_ = true;
          }
          eof = true;
        } else {
          want = std::min(want, total_left);
          ssize_t n;
          do n = ::read(fd, buf_.get() + len, want); while (n < 0 && errno == EINTR);
          if (n < 0) n = 0;  // unreadable: searched as far as it could be read
          // A short read of a regular file is its end.
          if (static_cast<uint64_t>(n) < want) eof = true;
          len += static_cast<size_t>(n);
          file_bytes += static_cast<uint64_t>(n);
          summary.bytes_searched += static_cast<uint64_t>(n);
          if (first) {
            first = false;
            if (std::memchr(buf_.get(), 0, len) != nullptr) {
              ++summary.files_binary;
              return true;
            }
          }
        }
      }
      size_t limit = len;
      if (!eof) {
        const void* nl = len > scan ? ::memrchr(buf_.get() + scan, '\n', len - scan) : nullptr;
        if (nl == nullptr && len - scan < kMaxLine) continue;  // a line longer than the buffer: read on
        if (nl != nullptr) limit = static_cast<size_t>(static_cast<const char*>(nl) - buf_.get()) + 1;
      }
      bool deferred = false;
      size_t pos = scan;
      size_t ms = 0;
      size_t me = 0;
      while (pos < limit && m_.find(buf_.get(), len, pos, limit, ms, me)) {
        const char* b = buf_.get();
        const void* before_nl = ms > pos ? ::memrchr(b + pos, '\n', ms - pos) : nullptr;
        const size_t line_start = before_nl ? static_cast<size_t>(static_cast<const char*>(before_nl) - b) + 1 : pos;
        const void* after_nl = ::memchr(b + ms, '\n', limit - ms);
        const size_t line_end = after_nl ? static_cast<size_t>(static_cast<const char*>(after_nl) - b) : limit;
        if (q_.context > 0 && !eof && !has_lines_after(line_end, len, q_.context)) {
          scan = line_start;  // its after-context is not read yet
          deferred = true;
          break;
        }
        counted_line += static_cast<uint64_t>(std::count(b + counted_off, b + line_start, '\n'));
        counted_off = line_start;
        if (!emit(abs, counted_line, line_start, line_end, ms, len)) return false;
        pos = line_end + 1;
      }
      if (!deferred) scan = limit;
      if (eof && !deferred) return true;
      if (!time_left()) return false;
      // Keep the context lines before `scan`; drop the rest of what was searched.
      size_t keep = scan;
      for (int c = 0; c < q_.context && keep > 1; ++c) {
        const void* p = ::memrchr(buf_.get(), '\n', keep - 1);
        keep = p ? static_cast<size_t>(static_cast<const char*>(p) - buf_.get()) + 1 : 0;
      }
      if (keep > 0) {
        if (counted_off < keep) {
          counted_line += static_cast<uint64_t>(std::count(buf_.get() + counted_off, buf_.get() + keep, '\n'));
          counted_off = keep;
        }
        std::memmove(buf_.get(), buf_.get() + keep, len - keep);
        len -= keep;
        scan -= keep;
        counted_off -= keep;
      }
    }
  }

  bool stopped() const { return stop_all_; }

  bool time_left() {
    if (stop_all_) return false;
    if (stop_ != nullptr && stop_->load(std::memory_order_relaxed)) {
      summary.cancelled = true;
      stop_all_ = true;
      return false;
    }
    if (Clock::now() >= deadline_) {
      cut("timeout");
      stop_all_ = true;
      return false;
    }
    return true;
  }

 private:
  void grow(size_t need) {
    size_t n = std::max(cap_ * 2, need);
    auto nb = std::make_unique_for_overwrite<char[]>(n);
    if (cap_ > 0) std::memcpy(nb.get(), buf_.get(), cap_);
    buf_ = std::move(nb);
    cap_ = n;
  }

  void cut(const char* by) {
    if (!summary.truncated) summary.truncated_by = by;
    summary.truncated = true;
  }

  bool has_lines_after(size_t line_end, size_t len, int n) const {
    size_t p = line_end;
    for (int i = 0; i < n; ++i) {
      if (p >= len) return false;
      const void* nl = ::memchr(buf_.get() + p + 1, '\n', len - p - 1);
      if (nl == nullptr) return false;
      p = static_cast<size_t>(static_cast<const char*>(nl) - buf_.get());
    }
    return true;
  }

  std::string line_text(size_t start, size_t end, size_t around, bool& cut_flag) const {
    if (end > start && buf_[end - 1] == '\r') --end;
    if (end - start <= GrepMatch::kMaxLineBytes) return std::string(buf_.get() + start, end - start);
    cut_flag = true;
    const size_t from = around > start + GrepMatch::kMaxLineBytes / 4 ? around - GrepMatch::kMaxLineBytes / 4 : start;
    return std::string(buf_.get() + from, std::min(end - from, GrepMatch::kMaxLineBytes));
  }

  bool emit(const std::string& abs, uint64_t line, size_t line_start, size_t line_end, size_t ms, size_t len) {
    GrepMatch m;
    m.path = abs;
    m.line = line;
    m.column = ms - line_start + 1;
    m.text = line_text(line_start, line_end, ms, m.text_cut);
    if (q_.context > 0) {
      bool ignored = false;
      size_t s = line_start;
      for (int c = 0; c < q_.context && s > 0; ++c) {
        const size_t e = s - 1;  // the '\n' ending the line before
        const void* p = e > 0 ? ::memrchr(buf_.get(), '\n', e) : nullptr;
        s = p ? static_cast<size_t>(static_cast<const char*>(p) - buf_.get()) + 1 : 0;
        m.before.insert(m.before.begin(), line_text(s, e, s, ignored));
      }
      size_t e = line_end;
      for (int c = 0; c < q_.context && e < len; ++c) {
        const size_t st = e + 1;
        if (st >= len) break;
        const void* p = ::memchr(buf_.get() + st, '\n', len - st);
        e = p ? static_cast<size_t>(static_cast<const char*>(p) - buf_.get()) : len;
        m.after.push_back(line_text(st, e, st, ignored));
      }
    }
    ++summary.matches;
    if (!on_match_(m)) {
      summary.cancelled = true;
      stop_all_ = true;
      return false;
    }
    if (summary.matches >= q_.max_results) {
      cut("max_results");
      stop_all_ = true;
      return false;
    }
    return true;
  }

  const GrepQuery& q_;
  const Matcher& m_;
  const std::function<bool(const GrepMatch&)>& on_match_;
  const std::atomic<bool>* stop_;
  Clock::time_point deadline_;
  std::unique_ptr<char[]> buf_;
  size_t cap_ = 0;
  bool stop_all_ = false;
};

class Walker {
 public:
  /// `glob`: the query's glob, compiled (null: none). `parents`: rules from .gitignore
  /// files above the search root.
  Walker(const GrepQuery& q, Search& s, const GlobPattern* glob, std::vector<IgnoreLevel> parents)
      : q_(q), s_(s), glob_(glob), ignores_(std::move(parents)) {}

  /// Walks the directory `fd` (consumed) whose absolute path is `abs` and relative path
  /// from the search root `rel` ("" or ending in '/').
  void dir(int fd, const std::string& abs, const std::string& rel, int depth, dev_t parent_dev) {
    struct stat st {};
    if (::fstat(fd, &st) != 0 || (st.st_dev != parent_dev && depth > 0 && is_pseudo_fs(fd))) {
      ::close(fd);
      return;
    }
    DIR* d = ::fdopendir(fd);
    if (d == nullptr) {
      ::close(fd);
      return;
    }
    std::vector<std::pair<std::string, unsigned char>> entries;
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.' && (e->d_name[1] == 0 || (e->d_name[1] == '.' && e->d_name[2] == 0))) continue;
      entries.emplace_back(e->d_name, e->d_type);
    }
    std::sort(entries.begin(), entries.end());
    const int dfd = ::dirfd(d);
    bool pushed = false;
    if (q_.gitignore) {
      auto it = std::lower_bound(entries.begin(), entries.end(), std::make_pair(std::string(".gitignore"), static_cast<unsigned char>(0)));
      if (it != entries.end() && it->first == ".gitignore") pushed = push_gitignore(dfd, rel);
    }
    for (auto& [name, type] : entries) {
      if (s_.stopped()) break;
      if (type == DT_UNKNOWN) {
        struct stat es {};
        if (::fstatat(dfd, name.c_str(), &es, AT_SYMLINK_NOFOLLOW) != 0) continue;
        type = S_ISDIR(es.st_mode) ? DT_DIR : S_ISREG(es.st_mode) ? DT_REG : DT_LNK;
      }
      const std::string child_rel = rel + name;
      if (type == DT_DIR) {
        if (depth + 1 >= kMaxDepth) continue;
        if (q_.gitignore && (name == ".git" || ignored(child_rel, true))) continue;
        const int sub = ::openat(dfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub >= 0) dir(sub, abs + "/" + name, child_rel + "/", depth + 1, st.st_dev);
      } else if (type == DT_REG) {
        if (glob_ != nullptr && !glob_->matches(glob_->has_slash() ? std::string_view(child_rel) : std::string_view(name))) continue;
        if (q_.gitignore && ignored(child_rel, false)) continue;
        const int f = ::openat(dfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
        if (f < 0) continue;
        const bool go_on = s_.file(f, abs == "/" ? "/" + name : abs + "/" + name);
        ::close(f);
        if (!go_on) break;
      }
      // Symlinks, sockets, FIFOs and devices are not searched.
    }
    if (pushed) ignores_.pop_back();
    ::closedir(d);
  }

 private:
  bool push_gitignore(int dfd, const std::string& rel) {
    auto rules = read_gitignore(dfd);
    if (rules.empty()) return false;
    ignores_.push_back({rel, std::move(rules), ""});
    return true;
  }

  bool ignored(const std::string& rel, bool is_dir) const {
    for (auto it = ignores_.rbegin(); it != ignores_.rend(); ++it) {
      const auto own = std::string_view(rel).substr(it->base.size());
      const auto v = it->prefix.empty() ? it->rules.match(own, is_dir) : it->rules.match(it->prefix + std::string(own), is_dir);
      if (v != GitignoreRules::Verdict::none) return v == GitignoreRules::Verdict::ignore;
    }
    return false;
  }

  const GrepQuery& q_;
  Search& s_;
  const GlobPattern* glob_;
  std::vector<IgnoreLevel> ignores_;
};

}  // namespace

namespace {

/// The query's glob compiled once for the whole walk; invalid_argument naming it.
core::Result<std::optional<GlobPattern>> compile_glob(const GrepQuery& query) {
  if (query.glob.empty()) return std::optional<GlobPattern>();
  auto g = GlobPattern::compile(query.glob);
  if (!g) return core::make_error(core::Errc::invalid_argument, "'glob': " + g.error().message);
  return std::optional<GlobPattern>(std::move(g).value());
}

core::Result<void> check_bounds(const GrepQuery& query) {
  if (query.context < 0 || query.context > GrepQuery::kMaxContext) {
    return core::make_error(core::Errc::invalid_argument, "'context' must be between 0 and " + std::to_string(GrepQuery::kMaxContext));
  }
  if (query.max_results == 0 || query.max_results > GrepQuery::kMaxResults) {
    return core::make_error(core::Errc::invalid_argument, "'max_results' must be between 1 and " + std::to_string(GrepQuery::kMaxResults));
  }
  if (query.max_bytes_per_file == 0) return core::make_error(core::Errc::invalid_argument, "'max_bytes_per_file' must be positive");
  return {};
}

}  // namespace

core::Result<void> ContentSearch::check(const GrepQuery& query) const {
  if (auto r = check_bounds(query); !r) return r;
  if (auto g = compile_glob(query); !g) return g.error();
  Matcher matcher;
  if (auto r = matcher.compile(query); !r) return r;
  auto p = resolver_.resolve(query.path);
  if (!p) return p.error();
  auto fd = resolver_.open_at(*p, O_PATH);
  if (!fd) return fd.error();
  return {};
}

core::Result<GrepSummary> ContentSearch::run(const GrepQuery& query, const std::function<bool(const GrepMatch&)>& on_match,
                                             const std::atomic<bool>* stop) const {
  if (auto r = check_bounds(query); !r) return r.error();
  auto glob = compile_glob(query);
  if (!glob) return glob.error();
  Matcher matcher;
  if (auto r = matcher.compile(query); !r) return r.error();
  auto p = resolver_.resolve(query.path);
  if (!p) return p.error();
  auto fd = resolver_.open_at(*p, O_RDONLY | O_NONBLOCK | O_NOCTTY);
  if (!fd) return fd.error();
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) return errno_error(errno, "cannot stat", p->abs);
  Search search(query, matcher, on_match, stop);
  if (S_ISREG(st.st_mode)) {
    search.file(fd->get(), p->abs);
  } else if (S_ISDIR(st.st_mode)) {
    Walker walker(query, search, glob->has_value() ? &**glob : nullptr,
                  query.gitignore ? parent_gitignores(p->abs, resolver_.root()) : std::vector<IgnoreLevel>());
    walker.dir(fd->release(), p->abs == "/" ? "" : p->abs, "", 0, st.st_dev);
  } else {
    return core::make_error(core::Errc::invalid_argument, "not a file or directory: " + p->abs);
  }
  return search.summary;
}

}  // namespace execd::files
