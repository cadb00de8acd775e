#include "files/disk_quota.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <set>
#include <utility>

#include "core/unique_fd.hpp"

namespace execd::files {
namespace {

/// Sum of apparent sizes of regular files below `dir` (fd consumed), inodes counted once.
void walk_sizes(int dir_fd, std::set<std::pair<dev_t, ino_t>>& seen, int64_t& total, int depth) {
  DIR* d = ::fdopendir(dir_fd);
  if (d == nullptr) {
    ::close(dir_fd);
    return;
  }
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    struct stat st {};
    if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (S_ISREG(st.st_mode)) {
      if (st.st_nlink > 1 && !seen.insert({st.st_dev, st.st_ino}).second) continue;
      total += st.st_size;
    } else if (S_ISDIR(st.st_mode) && depth < 256) {
      const int sub = ::openat(::dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub >= 0) walk_sizes(sub, seen, total, depth + 1);
    }
  }
  ::closedir(d);
}

}  // namespace

DiskQuota::DiskQuota(std::string root, uint64_t limit) : root_(std::move(root)), limit_(limit) {}

DiskQuota::Charge::~Charge() {
  if (quota_ == nullptr) return;
  std::lock_guard lock(quota_->mu_);
  quota_->pending_ -= delta_;
  if (!kept_) quota_->used_ -= delta_;
}

core::Error DiskQuota::refusal(int64_t delta, const std::string& what) const {
  const uint64_t used = used_ > 0 ? static_cast<uint64_t>(used_) : 0;
  return core::make_error(core::Errc::no_space,
                          "disk quota exceeded: writing " + what + " needs " + human(static_cast<uint64_t>(delta)) +
                              " more, " + human(used) + " of the " + human(limit_) + " quota on " + root_ + " is in use");
}

core::Result<DiskQuota::Charge> DiskQuota::charge(int64_t delta, const std::string& what) {
  std::lock_guard lock(mu_);
  if (delta > 0 && limit_ > 0 && used_ + delta > static_cast<int64_t>(limit_)) return refusal(delta, what);
  used_ += delta;
  pending_ += delta;
  return Charge(this, delta);
}

core::Result<void> DiskQuota::extend(Charge& c, int64_t delta, const std::string& what) {
  std::lock_guard lock(mu_);
  if (delta > 0 && limit_ > 0 && used_ + delta > static_cast<int64_t>(limit_)) return refusal(delta, what);
  used_ += delta;
  pending_ += delta;
  c.delta_ += delta;
  return {};
}

void DiskQuota::settle(Charge& c, int64_t delta) {
  std::lock_guard lock(mu_);
  used_ += delta - c.delta_;
  pending_ += delta - c.delta_;
  c.delta_ = delta;
}

core::Result<void> DiskQuota::check_room(uint64_t bytes, const std::string& what) const {
  std::lock_guard lock(mu_);
  const auto delta = static_cast<int64_t>(bytes);
  if (limit_ > 0 && used_ + delta > static_cast<int64_t>(limit_)) return refusal(delta, what);
  return {};
}

void DiskQuota::adjust(int64_t delta) {
  std::lock_guard lock(mu_);
  used_ += delta;
}

void DiskQuota::rescan() {
  int64_t total = 0;
  const int fd = ::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    std::set<std::pair<dev_t, ino_t>> seen;
    walk_sizes(fd, seen, total, 0);
  }
  std::lock_guard lock(mu_);
  used_ = total + pending_;
}

uint64_t DiskQuota::used() const {
  std::lock_guard lock(mu_);
  return used_ > 0 ? static_cast<uint64_t>(used_) : 0;
}

std::string DiskQuota::human(uint64_t bytes) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  size_t u = 0;
  while (v >= 1024 && u + 1 < std::size(units)) v /= 1024, ++u;
  char buf[32];
  if (u == 0) {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  } else {
    std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  }
  return buf;
}

}  // namespace execd::files
