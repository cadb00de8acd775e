#include "files/path_resolver.hpp"

#include "core/path_expand.hpp"

#include <linux/limits.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace execd::files {
namespace {

int sys_openat2(int dirfd, const char* path, int flags, uint64_t resolve) {
  open_how how{};
  how.flags = static_cast<uint64_t>(flags) | O_CLOEXEC;
  how.resolve = resolve;
  return static_cast<int>(syscall(SYS_openat2, dirfd, path, &how, sizeof how));
}


// Lexical normalisation of an absolute path: no ".", "..", "//".
std::string normalise(const std::string& abs) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i < abs.size()) {
    size_t j = abs.find('/', i);
    if (j == std::string::npos) j = abs.size();
    const std::string part = abs.substr(i, j - i);
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    i = j + 1;
  }
  std::string out;
  for (const auto& p : parts) out += "/" + p;
  return out.empty() ? "/" : out;
}

bool is_within(const std::string& path, const std::string& root) {
  if (root == "/") return true;
  return path == root || (path.size() > root.size() && path.compare(0, root.size(), root) == 0 && path[root.size()] == '/');
}

}  // namespace

core::Error errno_error(int err, const std::string& what, const std::string& path) {
  const std::string msg = what + " " + path + ": " + std::strerror(err);
  switch (err) {
    case ENOENT: return core::make_error(core::Errc::file_not_found, "file not found: " + path);
    case EACCES:
    case EPERM:
    case EROFS: return core::make_error(core::Errc::permission_denied, msg);
    case EXDEV:
    case ELOOP: return core::make_error(core::Errc::forbidden, "path escapes the files root: " + path);
    case ENOSPC:
    case EDQUOT: return core::make_error(core::Errc::no_space, msg);
    case ENOTDIR:
    case EISDIR:
    case EEXIST:
    case ENOTEMPTY:
    case ENAMETOOLONG:
    case EINVAL: return core::make_error(core::Errc::invalid_argument, msg);
    default: return core::make_error(core::Errc::internal, msg);
  }
}

PathResolver::PathResolver(std::string root) {
  if (!root.empty()) {
    char* real = ::realpath(root.c_str(), nullptr);
    root_ = real != nullptr ? real : normalise(root);
    std::free(real);
  }
}

core::Result<std::string> PathResolver::absolute(const std::string& user_path) const {
  if (user_path.empty()) return core::make_error(core::Errc::invalid_argument, "path is empty");
  if (user_path.find('\0') != std::string::npos) {
    return core::make_error(core::Errc::invalid_argument, "path contains a NUL byte");
  }
  auto expanded = core::expand_path(user_path);
  if (!expanded) return expanded.error();
  std::string p = *expanded;
  if (p[0] != '/') {
    char cwd[4096];
    if (::getcwd(cwd, sizeof cwd) == nullptr) return errno_error(errno, "getcwd for", p);
    p = std::string(cwd) + "/" + p;
  }
  p = normalise(p);
  // The kernel would refuse these with ENAMETOOLONG at some step, and a step that
  // answers "not found" instead would make a delete look successful: refuse them here,
  // naming the limit.
  if (p.size() >= PATH_MAX) {
    return core::make_error(core::Errc::invalid_argument, "path is " + std::to_string(p.size()) + " bytes long; at most " +
                                                              std::to_string(PATH_MAX - 1) + " are allowed (PATH_MAX)");
  }
  for (size_t i = 1; i < p.size();) {
    size_t j = p.find('/', i);
    if (j == std::string::npos) j = p.size();
    if (j - i > NAME_MAX) {
      return core::make_error(core::Errc::invalid_argument, "path component '" + p.substr(i, 40) + "...' is " +
                                                                std::to_string(j - i) + " bytes long; at most " +
                                                                std::to_string(NAME_MAX) + " are allowed (NAME_MAX)");
    }
    i = j + 1;
  }
  if (!root_.empty() && !is_within(p, root_)) {
    return core::make_error(core::Errc::forbidden, "path is outside the files root " + root_ + ": " + user_path);
  }
  return p;
}

core::Result<core::UniqueFd> PathResolver::open_beneath(const std::string& abs, int flags) const {
  if (root_.empty()) {
    const int fd = ::open(abs.c_str(), flags | O_CLOEXEC);
    if (fd < 0) return errno_error(errno, "cannot open", abs);
    return core::UniqueFd(fd);
  }
  const int root_fd = ::open(root_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root_fd < 0) return errno_error(errno, "cannot open the files root", root_);
  core::UniqueFd root_holder(root_fd);
  std::string rel = abs.size() > root_.size() ? abs.substr(root_.size() + (root_ == "/" ? 0 : 1)) : ".";
  if (rel.empty()) rel = ".";
  int fd = sys_openat2(root_fd, rel.c_str(), flags, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS);
  if (fd < 0 && errno == EXDEV) {
    // RESOLVE_BENEATH refuses every absolute symlink, also one that points inside the
    // root. Such a path is retried once in its canonical form (no symlinks left), which
    // must itself lie inside the root; a symlink swapped in meanwhile fails again.
    char* real = ::realpath(abs.c_str(), nullptr);
    const std::string canonical = real != nullptr ? real : "";
    std::free(real);
    if (!canonical.empty() && canonical != abs && is_within(canonical, root_)) {
      std::string crel = canonical.size() > root_.size() ? canonical.substr(root_.size() + (root_ == "/" ? 0 : 1)) : ".";
      if (crel.empty()) crel = ".";
      fd = sys_openat2(root_fd, crel.c_str(), flags, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS);
    } else {
      errno = EXDEV;
    }
  }
  if (fd < 0) return errno_error(errno, "cannot open", abs);
  return core::UniqueFd(fd);
}

core::Result<core::UniqueFd> PathResolver::open_dir(const std::string& abs, bool path_only) const {
  return open_beneath(abs, (path_only ? O_PATH : O_RDONLY) | O_DIRECTORY);
}

core::Result<ResolvedPath> PathResolver::resolve(const std::string& user_path) const {
  auto abs = absolute(user_path);
  if (!abs) return abs.error();
  ResolvedPath out;
  out.abs = *abs;
  if (*abs == "/" || (!root_.empty() && *abs == root_)) {
    auto fd = open_dir(*abs, true);
    if (!fd) return fd.error();
    out.parent = std::move(*fd);
    out.leaf = "";
    return out;
  }
  const auto slash = abs->rfind('/');
  const std::string parent = slash == 0 ? "/" : abs->substr(0, slash);
  out.leaf = abs->substr(slash + 1);
  auto fd = open_dir(parent, true);
  if (!fd) {
    if (fd.error().code == core::Errc::file_not_found) {
      return core::make_error(core::Errc::file_not_found, "file not found: " + *abs);
    }
    return fd.error();
  }
  out.parent = std::move(*fd);
  return out;
}

core::Result<ResolvedPath> PathResolver::resolve_creating_parents(const std::string& user_path) const {
  auto abs = absolute(user_path);
  if (!abs) return abs.error();
  // Create each missing ancestor below the root, checking each through open_beneath.
  const auto slash = abs->rfind('/');
  const std::string parent = slash == 0 ? "/" : abs->substr(0, slash);
  size_t pos = root_.empty() || root_ == "/" ? 0 : root_.size();
  while (pos < parent.size()) {
    size_t next = parent.find('/', pos + 1);
    if (next == std::string::npos) next = parent.size();
    const std::string prefix = parent.substr(0, next);
    auto fd = open_dir(prefix, true);
    if (!fd) {
      if (fd.error().code != core::Errc::file_not_found) return fd.error();
      const std::string up = prefix.substr(0, prefix.rfind('/'));
      auto up_fd = open_dir(up.empty() ? "/" : up, true);
      if (!up_fd) return up_fd.error();
      const std::string name = prefix.substr(prefix.rfind('/') + 1);
      if (::mkdirat(up_fd->get(), name.c_str(), 0777) != 0 && errno != EEXIST) {
        return errno_error(errno, "cannot create directory", prefix);
      }
      if (auto again = open_dir(prefix, true); !again) return again.error();
    }
    pos = next;
  }
  return resolve(*abs);
}

core::Result<core::UniqueFd> PathResolver::open_at(const ResolvedPath& p, int flags, mode_t mode) const {
  const char* leaf = p.leaf.empty() ? "." : p.leaf.c_str();
  int fd = -1;
  if (root_.empty()) {
    fd = ::openat(p.parent.get(), leaf, flags | O_CLOEXEC, mode);
  } else {
    open_how how{};
    how.flags = static_cast<uint64_t>(flags) | O_CLOEXEC;
    how.mode = (flags & (O_CREAT | O_TMPFILE)) != 0 ? mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    fd = static_cast<int>(syscall(SYS_openat2, p.parent.get(), leaf, &how, sizeof how));
    // A symlink leaf leading elsewhere inside the root: through its canonical path.
    if (fd < 0 && errno == EXDEV && (flags & O_CREAT) == 0) return open_beneath(p.abs, flags);
  }
  if (fd < 0) return errno_error(errno, "cannot open", p.abs);
  return core::UniqueFd(fd);
}

}  // namespace execd::files
