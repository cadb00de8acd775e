#pragma once

#include <cstdint>
#include <string>

#include "core/result.hpp"

namespace execd::gateway {

/// A sandbox workspace's disk quota: a tmpfs of the asked size mounted over the
/// workspace directory, in the gateway's mount namespace (so it outlives a gateway
/// restart and bubblewrap binds it into the sandbox like any directory).
///
/// Why tmpfs and not a loop-mounted ext4 image: it is enforced by the kernel all the same
/// (ENOSPC at the size), it costs one mount(2) instead of an mkfs and a loop device per
/// sandbox (this host has 8 loop nodes; 50 sandboxes at once would need 50), and its
/// pages are charged to the memory cgroup of the writer, so a sandbox cannot use its
/// workspace to hold more memory than its limit. The price: workspace contents count
/// against the sandbox's memory limit and do not survive a host reboot (neither does the
/// sandbox). Needs CAP_SYS_ADMIN (the gateway runs as root for cgroups anyway).
class WorkspaceQuota {
 public:
  /// Mounts a tmpfs of `bytes` (rounded up to a page by the kernel) at `dir`, which must
  /// exist, mode 0755, nosuid, nodev. unavailable with errno's text on failure.
  static core::Result<void> mount(const std::string& dir, uint64_t bytes);
  /// Unmounts whatever is mounted at `dir` (lazily when busy); succeeds when nothing is.
  static core::Result<void> unmount(const std::string& dir);
  /// True when `dir` is a mount point in this process's mount namespace.
  static bool is_mounted(const std::string& dir);
};

}  // namespace execd::gateway
