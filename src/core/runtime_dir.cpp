#include "core/runtime_dir.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include <spdlog/spdlog.h>

#include "core/id.hpp"

namespace execd::core {
namespace {

constexpr const char* kPrefix = "execd-";

Result<void> ensure_private_base(const std::string& base) {
  if (::mkdir(base.c_str(), 0700) != 0 && errno != EEXIST) {
    return make_error(Errc::unavailable, "cannot create runtime base " + base + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (::lstat(base.c_str(), &st) != 0) {
    return make_error(Errc::unavailable, "cannot stat runtime base " + base + ": " + std::strerror(errno));
  }
  if (!S_ISDIR(st.st_mode) || st.st_uid != ::geteuid() || (st.st_mode & 0022) != 0) {
    return make_error(Errc::permission_denied,
                      "runtime base " + base + " must be a directory owned by this user and writable only by it");
  }
  return {};
}

/// True when `dir/lock` exists and nobody holds it: its daemon is gone.
bool is_stale(const std::string& dir) {
  UniqueFd fd(::open((dir + "/lock").c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) {
    // A directory being created holds no lock file for a moment; only an old one is stale.
    struct stat st {};
    return ::lstat(dir.c_str(), &st) == 0 && ::time(nullptr) - st.st_mtime > 60;
  }
  return ::flock(fd.get(), LOCK_EX | LOCK_NB) == 0;
}

void sweep(const std::string& base, const RuntimeDir::StaleHook& on_stale) {
  DIR* d = ::opendir(base.c_str());
  if (d == nullptr) return;
  while (dirent* e = ::readdir(d)) {
    if (std::strncmp(e->d_name, kPrefix, std::strlen(kPrefix)) != 0) continue;
    const std::string dir = base + "/" + e->d_name;
    if (!is_stale(dir)) continue;
    spdlog::info("runtime: removing {} left by a daemon that is gone", dir);
    if (on_stale) on_stale(dir);
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    if (ec) spdlog::warn("runtime: cannot remove {}: {}", dir, ec.message());
  }
  ::closedir(d);
}

}  // namespace

std::string RuntimeDir::default_base() {
  const char* tmp = std::getenv("TMPDIR");
  std::string base = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
  return base + "/execd-" + std::to_string(::geteuid());
}

Result<RuntimeDir> RuntimeDir::create(const std::string& base, const StaleHook& on_stale) {
  if (auto r = ensure_private_base(base); !r) return r.error();
  sweep(base, on_stale);
  const std::string path = base + "/" + kPrefix + std::to_string(::getpid()) + "-" + random_hex(4);
  if (::mkdir(path.c_str(), 0700) != 0) {
    return make_error(Errc::unavailable, "cannot create runtime directory " + path + ": " + std::strerror(errno));
  }
  UniqueFd lock(::open((path + "/lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!lock.valid() || ::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
    return make_error(Errc::unavailable, "cannot lock runtime directory " + path + ": " + std::strerror(errno));
  }
  return RuntimeDir(path, std::move(lock));
}

RuntimeDir::~RuntimeDir() {
  if (path_.empty() || !lock_.valid()) return;  // moved from
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

Result<std::string> RuntimeDir::subdir(const std::string& name) const {
  const std::string dir = path_ + "/" + name;
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return make_error(Errc::unavailable, "cannot create " + dir + ": " + std::strerror(errno));
  }
  return dir;
}

}  // namespace execd::core
