#include "files/file_service.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <functional>

#include <nlohmann/json.hpp>

namespace execd::files {
namespace {

// Entries of an open directory, sorted, without . and ..
core::Result<std::vector<std::string>> read_names(int dirfd, const std::string& abs) {
  const int dup = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dup < 0) return errno_error(errno, "cannot read directory", abs);
  DIR* d = ::fdopendir(dup);
  if (d == nullptr) {
    ::close(dup);
    return errno_error(errno, "cannot read directory", abs);
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

std::string join(const std::string& dir, const std::string& name) { return dir == "/" ? "/" + name : dir + "/" + name; }

// Visits entries below dirfd in pre-order; `visit` returns false to stop. Never follows
// symlinks (O_NOFOLLOW on every descent).
core::Result<void> walk(int dirfd, const std::string& abs, int depth,
                        const std::function<bool(const FileInfo&)>& visit, bool& stopped) {
  auto names = read_names(dirfd, abs);
  if (!names) return names.error();
  for (const auto& name : *names) {
    auto info = stat_info(dirfd, name, join(abs, name));
    if (!info) continue;  // vanished meanwhile
    if (!visit(*info)) {
      stopped = true;
      return {};
    }
    if (info->type == "directory" && depth > 1) {
      const int sub = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub < 0) continue;  // unreadable: reported, not descended
      core::UniqueFd holder(sub);
      if (auto r = walk(sub, info->path, depth - 1, visit, stopped); !r) return r;
      if (stopped) return {};
    }
  }
  return {};
}

/// Removes what `dirfd` holds; adds to `freed` the bytes of the regular files whose last
/// name it removed (the quota's credit).
core::Result<void> remove_below(int dirfd, const std::string& abs, int level, int64_t& freed) {
  if (level > FileService::kMaxWalkDepth) {
    return core::make_error(core::Errc::invalid_argument, "directory tree is nested deeper than " +
                                                              std::to_string(FileService::kMaxWalkDepth) +
                                                              " levels; not removed: " + abs);
  }
  auto names = read_names(dirfd, abs);
  if (!names) return names.error();
  for (const auto& name : *names) {
    struct stat st {};
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      const int sub = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub < 0) return errno_error(errno, "cannot open", join(abs, name));
      core::UniqueFd holder(sub);
      if (auto r = remove_below(sub, join(abs, name), level + 1, freed); !r) return r;
      if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
        return errno_error(errno, "cannot remove", join(abs, name));
      }
    } else if (::unlinkat(dirfd, name.c_str(), 0) != 0) {
      if (errno != ENOENT) return errno_error(errno, "cannot remove", join(abs, name));
    } else if (S_ISREG(st.st_mode) && st.st_nlink == 1) {
      freed += st.st_size;
    }
  }
  return {};
}

}  // namespace

FileService::FileService(Options options) : resolver_(options.root), options_(std::move(options)) {}

core::Result<AtomicWriter> FileService::open_writer(const std::string& path, uint64_t max_bytes) const {
  return AtomicWriter::open(resolver_, path, max_bytes, closer_.get(), options_.quota.get());
}

core::Result<AttributeRequest> FileService::attribute_request(const nlohmann::json& v, const std::string& subject) {
  if (!v.is_object()) return core::make_error(core::Errc::invalid_argument, subject + " must be an object");
  AttributeRequest a;
  if (auto m = v.find("mode"); m != v.end() && !m->is_null()) {
    if (!m->is_number_integer()) return core::make_error(core::Errc::invalid_argument, "mode of " + subject + " must be an integer like 755");
    a.mode = m->get<int64_t>();
  }
  for (const char* key : {"owner", "group"}) {
    auto it = v.find(key);
    if (it == v.end() || it->is_null()) continue;
    if (!it->is_string()) return core::make_error(core::Errc::invalid_argument, std::string(key) + " of " + subject + " must be a string or null");
    (std::string(key) == "owner" ? a.owner : a.group) = it->get<std::string>();
  }
  return a;
}

core::Result<FileAttributes> FileService::attributes(const AttributeRequest& req) {
  FileAttributes a;
  if (req.mode != 0) {
    auto m = mode_from_digits(req.mode);
    if (!m) return m.error();
    a.mode = *m;
  }
  if (!req.owner.empty()) {
    auto u = uid_of(req.owner);
    if (!u) return u.error();
    a.uid = *u;
  }
  if (!req.group.empty()) {
    auto g = gid_of(req.group);
    if (!g) return g.error();
    a.gid = *g;
  }
  return a;
}

core::Result<FileInfo> FileService::info(const std::string& path) const {
  auto p = resolver_.resolve(path);
  if (!p) return p.error();
  return stat_info(p->parent.get(), p->leaf, p->abs);
}

core::Result<FileService::OpenFile> FileService::open_read(const std::string& path) const {
  auto p = resolver_.resolve(path);
  if (!p) return p.error();
  auto fd = resolver_.open_at(*p, O_RDONLY);
  if (!fd) return fd.error();
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) return errno_error(errno, "cannot stat", p->abs);
  if (S_ISDIR(st.st_mode)) return core::make_error(core::Errc::invalid_argument, "is a directory, not a file: " + p->abs);
  if (!S_ISREG(st.st_mode)) return core::make_error(core::Errc::invalid_argument, "not a regular file: " + p->abs);
  OpenFile f;
  f.fd = std::move(*fd);
  f.size = static_cast<uint64_t>(st.st_size);
  f.abs = p->abs;
  f.modified_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  f.mode = st.st_mode;
  f.uid = st.st_uid;
  f.gid = st.st_gid;
  return f;
}

core::Result<void> FileService::remove_file(const std::string& path) const {
  auto p = resolver_.resolve(path);
  if (!p) return p.error().code == core::Errc::file_not_found ? core::Result<void>() : core::Result<void>(p.error());
  struct stat st {};
  if (::fstatat(p->parent.get(), p->leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return errno == ENOENT ? core::Result<void>() : errno_error(errno, "cannot stat", p->abs);
  }
  if (S_ISDIR(st.st_mode) || p->leaf.empty()) {
    return core::make_error(core::Errc::invalid_argument, "is a directory (use DELETE /directories): " + p->abs);
  }
  if (::unlinkat(p->parent.get(), p->leaf.c_str(), 0) != 0) {
    return errno == ENOENT ? core::Result<void>() : errno_error(errno, "cannot remove", p->abs);
  }
  if (options_.quota && S_ISREG(st.st_mode) && st.st_nlink == 1) options_.quota->adjust(-static_cast<int64_t>(st.st_size));
  return {};
}

core::Result<void> FileService::move(const std::string& src, const std::string& dest) const {
  auto from = resolver_.resolve(src);
  if (!from) return from.error();
  struct stat st {};
  if (::fstatat(from->parent.get(), from->leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return errno_error(errno, "cannot move", from->abs);
  }
  auto to = resolver_.resolve_creating_parents(dest);
  if (!to) return to.error();
  if (from->leaf.empty() || to->leaf.empty()) return core::make_error(core::Errc::invalid_argument, "cannot move the root");
  if (::renameat2(from->parent.get(), from->leaf.c_str(), to->parent.get(), to->leaf.c_str(), RENAME_NOREPLACE) != 0) {
    const int err = errno;
    if (err == EEXIST) return core::make_error(core::Errc::conflict, "destination exists: " + to->abs);
    if (err == EXDEV) {
      return core::make_error(core::Errc::not_supported, "cannot move across filesystems: " + from->abs + " -> " + to->abs);
    }
    return errno_error(err, "cannot move " + from->abs + " to", to->abs);
  }
  return {};
}

core::Result<void> FileService::set_attributes(const std::string& path, const AttributeRequest& req) const {
  auto attrs = attributes(req);
  if (!attrs) return attrs.error();
  auto p = resolver_.resolve(path);
  if (!p) return p.error();
  auto fd = resolver_.open_at(*p, O_PATH);
  if (!fd) return fd.error();
  // O_PATH descriptors take chmod/chown through their /proc/self/fd link.
  const std::string link = "/proc/self/fd/" + std::to_string(fd->get());
  if (attrs->mode && ::chmod(link.c_str(), *attrs->mode) != 0) return errno_error(errno, "cannot change the mode of", p->abs);
  if ((attrs->uid || attrs->gid) &&
      ::chown(link.c_str(), attrs->uid ? *attrs->uid : static_cast<uid_t>(-1), attrs->gid ? *attrs->gid : static_cast<gid_t>(-1)) != 0) {
    return errno_error(errno, "cannot change the owner of", p->abs);
  }
  return {};
}

core::Result<uint64_t> FileService::replace(const std::string& path, const std::string& old_text,
                                            const std::string& new_text) const {
  if (old_text.empty()) return core::make_error(core::Errc::invalid_argument, "'old' must not be empty");
  auto file = open_read(path);
  if (!file) return file.error();
  std::string content(file->size, '\0');
  size_t got = 0;
  while (got < content.size()) {
    const ssize_t n = ::read(file->fd.get(), content.data() + got, content.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error(errno, "cannot read", file->abs);  // never rewrite a partial read
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  content.resize(got);
  uint64_t count = 0;
  std::string out;
  out.reserve(content.size());
  size_t pos = 0;
  for (size_t hit; (hit = content.find(old_text, pos)) != std::string::npos; pos = hit + old_text.size()) {
    out.append(content, pos, hit - pos);
    out += new_text;
    ++count;
  }
  if (count == 0) return count;
  out.append(content, pos, std::string::npos);
  auto w = open_writer(file->abs);
  if (!w) return w.error();
  if (auto r = w->write(out); !r) return r.error();
  FileAttributes keep;
  keep.mode = file->mode & 07777;
  if (file->uid != ::geteuid()) keep.uid = file->uid;
  if (file->gid != ::getegid()) keep.gid = file->gid;
  if (auto r = w->commit(keep); !r) return r.error();
  return count;
}

core::Result<void> FileService::make_directories(const std::string& path, const AttributeRequest& req) const {
  auto attrs = attributes(req);
  if (!attrs) return attrs.error();
  auto p = resolver_.resolve_creating_parents(path);
  if (!p) return p.error();
  if (p->leaf.empty()) return {};
  if (::mkdirat(p->parent.get(), p->leaf.c_str(), 0777) != 0) {
    const int err = errno;
    struct stat st {};
    if (err == EEXIST && ::fstatat(p->parent.get(), p->leaf.c_str(), &st, 0) == 0 && S_ISDIR(st.st_mode)) return {};
    if (err == EEXIST) return core::make_error(core::Errc::conflict, "exists and is not a directory: " + p->abs);
    return errno_error(err, "cannot create directory", p->abs);
  }
  if (attrs->mode || attrs->uid || attrs->gid) return set_attributes(p->abs, req);
  return {};
}

core::Result<void> FileService::remove_tree(const std::string& path) const {
  auto p = resolver_.resolve(path);
  if (!p) return p.error().code == core::Errc::file_not_found ? core::Result<void>() : core::Result<void>(p.error());
  if (p->leaf.empty()) return core::make_error(core::Errc::forbidden, "refusing to remove the root: " + p->abs);
  struct stat st {};
  if (::fstatat(p->parent.get(), p->leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return errno == ENOENT ? core::Result<void>() : errno_error(errno, "cannot stat", p->abs);
  }
  if (!S_ISDIR(st.st_mode)) {
    if (::unlinkat(p->parent.get(), p->leaf.c_str(), 0) != 0) {
      return errno == ENOENT ? core::Result<void>() : errno_error(errno, "cannot remove", p->abs);
    }
    if (options_.quota && S_ISREG(st.st_mode) && st.st_nlink == 1) options_.quota->adjust(-static_cast<int64_t>(st.st_size));
    return {};
  }
  const int fd = ::openat(p->parent.get(), p->leaf.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return errno_error(errno, "cannot open", p->abs);
  core::UniqueFd holder(fd);
  int64_t freed = 0;
  auto removed = remove_below(fd, p->abs, 1, freed);
  // Credit what went even when a later entry could not be removed.
  if (options_.quota && freed > 0) options_.quota->adjust(-freed);
  if (!removed) return removed;
  if (::unlinkat(p->parent.get(), p->leaf.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
    return errno_error(errno, "cannot remove", p->abs);
  }
  return {};
}

core::Result<std::vector<FileInfo>> FileService::list(const std::string& path, int depth) const {
  if (depth < 0) return core::make_error(core::Errc::invalid_argument, "depth must be >= 0");
  auto p = resolver_.resolve(path);
  if (!p) return p.error();
  auto root = stat_info(p->parent.get(), p->leaf, p->abs);
  if (!root) return root.error();
  if (root->type == "symlink") return core::make_error(core::Errc::invalid_argument, "is a symlink, not a directory: " + p->abs);
  if (root->type != "directory") return core::make_error(core::Errc::invalid_argument, "not a directory: " + p->abs);
  std::vector<FileInfo> out;
  if (depth == 0) return out;
  auto fd = resolver_.open_at(*p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!fd) return fd.error();
  bool stopped = false;
  auto r = walk(fd->get(), p->abs, std::min(depth, kMaxWalkDepth), [&](const FileInfo& f) {
    out.push_back(f);
    return out.size() < options_.max_list_entries;
  }, stopped);
  if (!r) return r.error();
  return out;
}

core::Result<FileService::SearchResult> FileService::search(const std::string& path, const std::string& pattern) const {
  auto glob = GlobPattern::compile(pattern.empty() ? "**" : pattern);
  if (!glob) return glob.error();
  auto p = resolver_.resolve(path);
  if (!p) return p.error();
  auto fd = resolver_.open_at(*p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!fd) return fd.error();
  SearchResult out;
  const bool absolute = !pattern.empty() && pattern[0] == '/';
  const size_t prefix = p->abs == "/" ? 1 : p->abs.size() + 1;  // "<root>/" before a relative path
  const auto deadline = std::chrono::steady_clock::now() + options_.search_timeout;
  size_t visited = 0;
  bool stopped = false;
  auto r = walk(fd->get(), p->abs, kMaxWalkDepth, [&](const FileInfo& f) {
    // The clock is read every 64 entries: cheap, and a stat costs more than the read.
    if (++visited % 64 == 0 && std::chrono::steady_clock::now() >= deadline) {
      out.cut = SearchResult::Cut::time;
      return false;
    }
    if (f.type == "directory") return true;
    std::string_view subject = f.path;
    if (!absolute) subject.remove_prefix(glob->has_slash() ? prefix : f.path.rfind('/') + 1);
    if (!glob->matches(subject)) return true;
    if (out.entries.size() >= options_.max_search_results) {
      out.cut = SearchResult::Cut::results;
      return false;
    }
    out.entries.push_back(f);
    return true;
  }, stopped);
  if (!r) return r.error();
  return out;
}

}  // namespace execd::files
