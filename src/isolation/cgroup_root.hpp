#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "isolation/cgroup.hpp"

namespace execd::isolation {

/// The daemon's own cgroup parent, `execd-<pid>-<start time>`, made inside the cgroup the
/// daemon itself runs in (so whatever limits the operator put on the daemon also bound
/// its executions): one directory per v1 controller (memory, pids, cpuacct, freezer), or
/// one v2 directory with memory/pids/cpu delegated to its children.
///
/// open() first sweeps the daemon's cgroup for `execd-*` parents whose daemon is gone
/// (pid dead, or reused with another start time): their processes are killed and their
/// groups removed. It never fails: a host without usable cgroups gives a root with
/// version() == 0 and reason() saying why. Thread-safe; the destructor kills and removes
/// every group it made.
class CgroupRoot {
 public:
  struct Options {
    std::string mountinfo = "/proc/self/mountinfo";
    std::string self_cgroup = "/proc/self/cgroup";
    std::string name;  ///< empty: execd-<pid>-<start time>; tests give their own
    /// Also the v1 cpu controller, for CPU quotas (v2 delegates cpu anyway). Off for
    /// execd, whose executions are limited in CPU time by rlimit, not bandwidth.
    bool cpu = false;
    /// The destructor leaves the parent's groups alone (and the parent, unless it is
    /// empty): the gateway's sandboxes outlive the gateway, and a restarted one finds
    /// them again by `name`.
    bool keep_groups = false;
  };

  static std::unique_ptr<CgroupRoot> open(const Options& options);
  static std::unique_ptr<CgroupRoot> open() { return open(Options{}); }
  ~CgroupRoot();  ///< remove_all()
  CgroupRoot(const CgroupRoot&) = delete;
  CgroupRoot& operator=(const CgroupRoot&) = delete;

  /// 1, 2, or 0 when no controller could be used.
  [[nodiscard]] int version() const { return version_; }
  /// Why cgroups, or a controller, are not usable ("" when all are).
  [[nodiscard]] const std::string& reason() const { return reason_; }
  /// Whether `controller` ("memory", "pids", "cpuacct" on v1 / "cpu" on v2, "freezer") can
  /// be limited and read in a child group: checked by making one at open().
  [[nodiscard]] bool writable(const std::string& controller) const;
  [[nodiscard]] std::vector<std::string> writable_controllers() const;
  /// Parent directory per controller ("" for v2).
  [[nodiscard]] const std::map<std::string, std::string>& parent_dirs() const { return parents_; }

  /// A new, empty child group `name` (one path component) with every writable controller.
  core::Result<std::unique_ptr<Cgroup>> create(const std::string& name);
  /// The child group `name` made earlier (by this object or by an earlier one with the
  /// same parent name, before a restart); not_found when no directory of it exists.
  core::Result<std::unique_ptr<Cgroup>> open_existing(const std::string& name);

  /// Kills and removes every group this object made and the parent itself (with
  /// keep_groups: the parent only when it is empty). Once only; later calls, and the
  /// destructor after it, do nothing. For a program that must exit without running its
  /// destructors: other threads may still call create() meanwhile (it then fails).
  void remove_all();

  /// The name rule used for parents: "execd-<pid>-<start time in clock ticks>".
  static std::string parent_name_for(pid_t pid);
  /// True when the daemon that named a parent `name` is no longer running.
  static bool is_stale_parent(const std::string& name);

 private:
  CgroupRoot() = default;
  int version_ = 0;
  std::string reason_;
  std::map<std::string, std::string> parents_;  // controller -> parent dir (v2: "" -> dir)
  std::vector<std::string> writable_;
  bool keep_groups_ = false;
  std::atomic<bool> removed_{false};
};

}  // namespace execd::isolation
