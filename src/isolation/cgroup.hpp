#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "core/unique_fd.hpp"

namespace execd::isolation {

/// What a cgroup has counted so far; a field the host cannot count is nullopt.
struct CgroupUsage {
  std::optional<uint64_t> memory_peak_bytes;  ///< v1 memory.max_usage_in_bytes, v2 memory.peak
  std::optional<uint64_t> cpu_usage_ns;       ///< v1 cpuacct.usage, v2 cpu.stat usage_usec
  std::optional<uint64_t> pids_current;
  uint64_t oom_kills = 0;                     ///< v1 memory.oom_control / v2 memory.events oom_kill
  uint64_t pids_limit_hits = 0;               ///< pids.events max: forks refused at the limit
};

/// One execution's cgroup: a directory per v1 controller (memory, pids, cpuacct, freezer)
/// or one v2 directory, under the daemon's CgroupRoot. Made by CgroupRoot::create; owned
/// by the execution; any thread, one at a time. Destruction kills whatever is still in it
/// and removes it, so a finished execution leaves neither processes nor directories.
///
/// Everything a process starts is in its cgroup and stays there (only a privileged process
/// can move itself out), so the group finds grandchildren and `setsid` escapees alike.
class Cgroup {
 public:
  /// `dirs`: controller name -> directory ("" for the single v2 directory).
  Cgroup(int version, std::map<std::string, std::string> dirs);
  ~Cgroup();
  Cgroup(const Cgroup&) = delete;
  Cgroup& operator=(const Cgroup&) = delete;

  [[nodiscard]] int version() const { return version_; }
  /// The directory holding `controller`'s files (v2: the one directory); empty if absent.
  [[nodiscard]] std::string dir(const std::string& controller) const;

  /// Hard memory cap, swap included where the host accounts swap.
  core::Result<void> set_memory_limit(uint64_t bytes);
  /// Most processes (threads count too, as the kernel counts tasks) alive at once.
  core::Result<void> set_pids_limit(uint64_t count);
  /// CPU bandwidth: `millis` thousandths of a core per 100 ms period (v1 cpu.cfs_quota_us,
  /// v2 cpu.max). not_supported without a cpu controller in this group.
  core::Result<void> set_cpu_quota(uint32_t millis);

  /// Freezes (or thaws) every process of the group and waits until the kernel reports the
  /// state reached (v1 freezer.state FROZEN/THAWED, v2 cgroup.events "frozen"):
  /// unavailable naming the state seen when `timeout` passes, not_supported without a
  /// freezer.
  core::Result<void> freeze(bool frozen, std::chrono::milliseconds timeout = std::chrono::seconds(5));
  /// True when the group is frozen now (a freeze still settling is not frozen yet).
  [[nodiscard]] bool is_frozen() const;

  /// Forgets the group without touching it: the destructor then neither kills nor
  /// removes (the gateway's sandboxes outlive the object, and the gateway, that made them).
  void release();

  /// Moves `pid` in from the parent (racy for a running process that forks meanwhile:
  /// prefer procs_fds() in the child before exec).
  core::Result<void> add(pid_t pid);
  /// O_WRONLY|O_CLOEXEC cgroup.procs descriptors, one per directory, opened on first call
  /// and owned by this object: a child writes "0" to each to join (ChildSteps). On v2
  /// dir_fd() serves clone3(CLONE_INTO_CGROUP) instead.
  core::Result<std::vector<int>> procs_fds();
  /// O_DIRECTORY descriptor of the v2 directory (-1 on v1).
  core::Result<int> dir_fd();

  /// Pids in the group now (the union over v1 controllers).
  [[nodiscard]] std::vector<pid_t> pids() const;
  [[nodiscard]] CgroupUsage usage() const;
  [[nodiscard]] bool oom_killed() const { return usage().oom_kills > 0; }

  /// Called between kill rounds with the pids just killed (empty while waiting for the
  /// group to go): a daemon that is the subreaper of what it kills reaps the orphans
  /// here, since a killed but unreaped task still holds its group (rmdir says EBUSY; v1
  /// pids.current still counts it) and no longer shows in cgroup.procs.
  using Reap = std::function<void(const std::vector<pid_t>& killed)>;

  /// SIGKILLs everything in the group until it is empty or `timeout` passes. v2 with
  /// cgroup.kill: one write. Otherwise SIGKILL each member listed; once a member shows up
  /// that was not killed yet (a fork raced the kill), freeze (so nothing forks between
  /// reading the list and the kill), SIGKILL each, thaw, repeat. A frozen group (a paused
  /// sandbox) is thawed once its members outlive a first SIGKILL, so the kill lands.
  /// unavailable if processes remain.
  core::Result<void> kill_all(std::chrono::milliseconds timeout = std::chrono::seconds(5), const Reap& reap = {});
  /// rmdir of every directory (kill_all first), waiting up to `busy_wait` in all for
  /// killed tasks to be reaped (EBUSY until then; not for a group that has child groups:
  /// those keep it busy for good); unavailable when one is still busy. Idempotent.
  core::Result<void> remove(const Reap& reap = {}, std::chrono::milliseconds busy_wait = std::chrono::seconds(5));

  /// Renames every directory of the group to `name` within its parent (cgroup v1 allows a
  /// rename in place; open descriptors stay valid). not_supported on v2, which cannot
  /// rename; unavailable naming the directory otherwise (those renamed before it keep
  /// the new name, and dir() follows them).
  core::Result<void> rename(const std::string& name);

 private:
  int version_;
  std::map<std::string, std::string> dirs_;
  std::vector<core::UniqueFd> procs_fds_;
  core::UniqueFd dir_fd_;
  bool removed_ = false;
};

/// Reads a cgroup-style file ("max" or a number) as uint64; nullopt when missing.
std::optional<uint64_t> read_cgroup_number(const std::string& path);
/// The value of `key` in a "key value" per line file (memory.events, oom_control, ...).
std::optional<uint64_t> read_cgroup_key(const std::string& path, const std::string& key);
/// Writes `text` to a cgroup control file; the error names the file and errno.
core::Result<void> write_cgroup_file(const std::string& path, const std::string& text);
/// Every pid listed in `dir`/cgroup.procs.
std::vector<pid_t> read_cgroup_procs(const std::string& dir);
/// Names of the child groups (subdirectories) of the cgroup directory `dir`.
std::vector<std::string> child_groups(const std::string& dir);

}  // namespace execd::isolation
