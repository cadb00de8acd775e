#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "core/result.hpp"
#include "isolation/cgroup.hpp"
#include "isolation/cgroup_root.hpp"

namespace execd::isolation {

/// Takes the making and removing of execution cgroups off the request path: a few spare
/// groups made ahead (the mkdir in every hierarchy and the open of each cgroup.procs, by
/// one background thread), and used groups removed by that same thread once their
/// execution has killed what was in them.
///
/// A group is used once: a spare was made empty by mkdir, with every limit at the kernel's
/// default and every counter at zero, and no execution has been in it; take() hands it to
/// one execution, which writes its own limits, and retire() sends it to be removed, never
/// back to the spares. So no execution sees another's tasks, limits or counters.
///
/// Thread-safe. Nothing is lost: the destructor removes spares and retired groups; a
/// daemon exiting without destructors calls close() and then CgroupRoot::remove_all(),
/// which removes every group under the parent, these included.
class CgroupPool {
 public:
  struct Options {
    size_t size = 4;  ///< spare groups kept ready; 0: take() makes each group in place
    /// Retired groups waiting for removal; past it retire() removes on the caller's thread
    /// (a remover that cannot keep up slows executions down rather than piling up groups).
    size_t max_retired = 256;
    /// How long the thread keeps off after a take or a retire before it makes or removes
    /// a group (unless no spare is left): mkdir, rename, rmdir and a child's join all take
    /// the kernel's one cgroup mutex, so work started at once would queue the very
    /// execution that asked behind it.
    std::chrono::milliseconds quiet = std::chrono::milliseconds(5);
  };

  CgroupPool(std::shared_ptr<CgroupRoot> root, Options options);
  ~CgroupPool();  ///< close(), then every spare and retired group removed (at most 5 s each)
  CgroupPool(const CgroupPool&) = delete;
  CgroupPool& operator=(const CgroupPool&) = delete;

  /// A group no execution has used, with no limit set. From the spares when one is ready
  /// (on cgroup v1 renamed to `name` so /proc/<pid>/cgroup names the execution; v2 cannot
  /// rename, the spare keeps its `spare-N` name), else made now as CgroupRoot::create
  /// makes it, with its errors. Wakes the refill either way.
  core::Result<std::unique_ptr<Cgroup>> take(const std::string& name);

  /// Removes `group` off the caller's path (kill_all and rmdir on the pool's thread,
  /// retried with backoff while a killed task is still unreaped). The caller has already
  /// killed its processes (the end of an execution must not wait for the rmdir, but must
  /// not leave processes behind either).
  void retire(std::unique_ptr<Cgroup> group);

  /// Removes an execution's fresh workspace directory (with everything in it) off the
  /// caller's path too: a directory that was a mount point in a sandbox whose mount
  /// namespace is still being torn down costs an RCU grace period to remove (about 1 ms
  /// here). Not retried on error (logged); the daemon's runtime directory, under which
  /// workspaces live, goes at exit anyway.
  void retire_directory(std::string dir);

  /// Stops making spares: once it returns, the pool makes no directory (take() still makes
  /// one in place, which fails once the root is removed). Idempotent, any thread.
  void close();

  /// Waits until the spares are full and no retired group is left to remove, or `timeout`
  /// passes (tests and benches: to measure or inspect a settled pool). True if settled.
  bool settle(std::chrono::milliseconds timeout);

  [[nodiscard]] size_t spare_count() const;
  [[nodiscard]] size_t size() const { return options_.size; }

 private:
  struct Retired {
    std::unique_ptr<Cgroup> group;
    std::chrono::steady_clock::time_point next_try;
    std::chrono::milliseconds backoff;
    std::chrono::steady_clock::time_point since;
    bool warned = false;
  };
  void run();
  std::unique_ptr<Cgroup> make_spare();

  std::shared_ptr<CgroupRoot> root_;
  Options options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable settled_cv_;
  std::deque<std::unique_ptr<Cgroup>> spares_;
  std::deque<Retired> retired_;
  std::deque<std::pair<std::string, std::chrono::steady_clock::time_point>> dirs_;  // with when to remove
  bool stopping_ = false;
  bool working_ = false;          // the thread is making or removing a group (settle() waits for it)
  bool closed_ = false;           // guarded by mu_; also read under make_mu_
  std::mutex make_mu_;            // held while the pool makes a directory, so close() can wait for it
  std::chrono::steady_clock::time_point refill_after_{};  // backoff after a failed make, or quiet after a take
  unsigned long long seq_ = 0;
  std::thread worker_;
};

}  // namespace execd::isolation
