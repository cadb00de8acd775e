#include "files/grep_walker.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace execd::files {
namespace {

constexpr int kMaxDepth = 256;
constexpr uint64_t kMaxGitignoreBytes = 1 << 20;

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
std::vector<GrepWalker::IgnoreLevel> parent_gitignores(const std::string& abs, const std::string& root) {
  std::vector<GrepWalker::IgnoreLevel> levels;
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
    if (!rules.empty()) levels.insert(levels.begin(), GrepWalker::IgnoreLevel{"", std::move(rules), below});
    if (has_git(dir)) return levels;
  }
  return {};
}

}  // namespace

GrepWalker::GrepWalker(const GrepQuery& q, const GlobPattern* glob, const std::string& abs_root,
                       const std::string& files_root, OnFile on_file)
    : q_(q), glob_(glob), abs_root_(abs_root == "/" ? "" : abs_root), on_file_(std::move(on_file)) {
  if (q.gitignore) ignores_ = parent_gitignores(abs_root, files_root);
}

void GrepWalker::walk(int fd, dev_t dev) { dir(fd, abs_root_, "", 0, dev); }

void GrepWalker::dir(int fd, const std::string& abs, const std::string& rel, int depth, dev_t parent_dev) {
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
  const auto open_dir = std::make_shared<const OpenDir>(d);
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
    if (stopped_) break;
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
      if (!on_file_(open_dir, name, abs + "/" + name)) stopped_ = true;
    }
    // Symlinks, sockets, FIFOs and devices are not searched.
  }
  if (pushed) ignores_.pop_back();
}

int GrepWalker::open_file(const OpenDir& dir, const std::string& name) {
  return ::openat(dir.fd(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
}

bool GrepWalker::push_gitignore(int dfd, const std::string& rel) {
  auto rules = read_gitignore(dfd);
  if (rules.empty()) return false;
  ignores_.push_back({rel, std::move(rules), ""});
  return true;
}

bool GrepWalker::ignored(const std::string& rel, bool is_dir) const {
  for (auto it = ignores_.rbegin(); it != ignores_.rend(); ++it) {
    const auto own = std::string_view(rel).substr(it->base.size());
    const auto v = it->prefix.empty() ? it->rules.match(own, is_dir) : it->rules.match(it->prefix + std::string(own), is_dir);
    if (v != GitignoreRules::Verdict::none) return v == GitignoreRules::Verdict::ignore;
  }
  return false;
}

}  // namespace execd::files
