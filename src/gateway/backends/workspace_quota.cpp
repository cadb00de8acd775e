#include "gateway/backends/workspace_quota.hpp"

#include <sys/mount.h>

#include <cerrno>
#include <cstring>
#include <sstream>

#include "core/fd_io.hpp"

namespace execd::gateway {

core::Result<void> WorkspaceQuota::mount(const std::string& dir, uint64_t bytes) {
  const std::string data = "size=" + std::to_string(bytes) + ",mode=0755";
  if (::mount("tmpfs", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, data.c_str()) != 0) {
    return core::make_error(core::Errc::unavailable,
                            "cannot mount a " + std::to_string(bytes) + "-byte tmpfs at " + dir + " for the disk quota: " +
                                std::strerror(errno));
  }
  return {};
}

core::Result<void> WorkspaceQuota::unmount(const std::string& dir) {
  // A tmpfs may be stacked (a failed remove retried after a second mount); take all.
  for (int i = 0; i < 8 && is_mounted(dir); ++i) {
    if (::umount2(dir.c_str(), 0) == 0) continue;
    // Busy: a process still has it open. Detach now; the kernel frees it when released.
    if (errno == EBUSY && ::umount2(dir.c_str(), MNT_DETACH) == 0) continue;
    if (errno == EINVAL || errno == ENOENT) return {};
    return core::make_error(core::Errc::unavailable, "cannot unmount " + dir + ": " + std::strerror(errno));
  }
  return {};
}

bool WorkspaceQuota::is_mounted(const std::string& dir) {
  std::istringstream in(core::read_file("/proc/self/mountinfo"));
  for (std::string line; std::getline(in, line);) {
    // Field 5 is the mount point; spaces in it are escaped as \040, so a split is safe.
    std::istringstream fields(line);
    std::string f;
    for (int i = 0; i < 5 && fields >> f; ++i) {
    }
    if (f == dir) return true;
  }
  return false;
}

}  // namespace execd::gateway
