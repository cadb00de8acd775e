#include "files/file_info.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>

#include <cerrno>
#include <charconv>

#include "files/path_resolver.hpp"

namespace execd::files {
namespace {

std::string user_name(uid_t uid) {
  passwd pw{};
  passwd* found = nullptr;
  char buf[4096];
  if (getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found != nullptr) return found->pw_name;
  return std::to_string(uid);
}

std::string group_name(gid_t gid) {
  group gr{};
  group* found = nullptr;
  char buf[8192];
  if (getgrgid_r(gid, &gr, buf, sizeof buf, &found) == 0 && found != nullptr) return found->gr_name;
  return std::to_string(gid);
}

int64_t ns(const timespec& t) { return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec; }

bool all_digits(const std::string& s, uint32_t& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return !s.empty() && ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

FileInfo file_info(const std::string& abs, const struct stat& st) {
  FileInfo f;
  f.path = abs;
  f.type = S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "directory" : S_ISLNK(st.st_mode) ? "symlink" : "other";
  f.size = static_cast<uint64_t>(st.st_size);
  f.modified_ns = ns(st.st_mtim);
  f.changed_ns = ns(st.st_ctim);
  f.owner = user_name(st.st_uid);
  f.group = group_name(st.st_gid);
  const unsigned perm = st.st_mode & 0777;
  f.mode = static_cast<int>(((perm >> 6) & 7) * 100 + ((perm >> 3) & 7) * 10 + (perm & 7));
  return f;
}

core::Result<FileInfo> stat_info(int dirfd, const std::string& name, const std::string& abs) {
  struct stat st {};
  const int flags = AT_SYMLINK_NOFOLLOW | (name.empty() ? AT_EMPTY_PATH : 0);
  if (::fstatat(dirfd, name.c_str(), &st, flags) != 0) return errno_error(errno, "cannot stat", abs);
  return file_info(abs, st);
}

core::Result<mode_t> mode_from_digits(int64_t digits) {
  if (digits < 0 || digits > 7777) {
    return core::make_error(core::Errc::invalid_argument, "mode must be octal digits like 644 or 755, got " + std::to_string(digits));
  }
  mode_t mode = 0;
  int64_t rest = digits;
  for (int shift = 0; rest > 0; shift += 3, rest /= 10) {
    const int d = static_cast<int>(rest % 10);
    if (d > 7) {
      return core::make_error(core::Errc::invalid_argument,
                              "mode " + std::to_string(digits) + " is not octal (digit " + std::to_string(d) + ")");
    }
    mode |= static_cast<mode_t>(d) << shift;
  }
  return mode;
}

core::Result<uid_t> uid_of(const std::string& user) {
  uint32_t id = 0;
  if (all_digits(user, id)) return static_cast<uid_t>(id);
  passwd pw{};
  passwd* found = nullptr;
  char buf[4096];
  if (getpwnam_r(user.c_str(), &pw, buf, sizeof buf, &found) != 0 || found == nullptr) {
    return core::make_error(core::Errc::invalid_argument, "unknown user: " + user);
  }
  return found->pw_uid;
}

core::Result<gid_t> gid_of(const std::string& group_in) {
  uint32_t id = 0;
  if (all_digits(group_in, id)) return static_cast<gid_t>(id);
  group gr{};
  group* found = nullptr;
  char buf[8192];
  if (getgrnam_r(group_in.c_str(), &gr, buf, sizeof buf, &found) != 0 || found == nullptr) {
    return core::make_error(core::Errc::invalid_argument, "unknown group: " + group_in);
  }
  return found->gr_gid;
}

}  // namespace execd::files
