#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>

#include "core/result.hpp"
#include "process/reactor.hpp"
#include "process/session_ledger.hpp"
#include "process/spawn.hpp"

namespace execd::process {

/// Makes the daemon the reaper of everything it starts, grandchildren included.
///
/// The daemon becomes a child subreaper, so a command's background jobs that outlive
/// their shell are re-parented to us rather than to PID 1 (which, in a container where
/// execd is the entrypoint, is us anyway). Children started through spawn() are "owned":
/// their owner reaps them (wait4 with rusage, from its pidfd callback) and then calls
/// disown(). Every other child that exits is an orphan and is reaped here, on the reactor
/// thread, within a second. Spawning and reaping share one lock, so an owned child is
/// never reaped as an orphan, however early it exits.
///
/// Every child is started on one spawner thread that lives as long as this object:
/// children die with the daemon (PR_SET_PDEATHSIG), and Linux sends that signal when the
/// *thread* that started them exits, so they must not be started on a request thread that
/// ends when idle. With `ledger_path`, every child's session is recorded there
/// (SessionLedger), so a daemon that replaces a dead one can end its descendants too.
class ChildReaper {
 public:
  explicit ChildReaper(std::shared_ptr<Reactor> reactor, const std::string& ledger_path = {});
  ~ChildReaper();
  ChildReaper(const ChildReaper&) = delete;
  ChildReaper& operator=(const ChildReaper&) = delete;

  /// process::spawn on the spawner thread, with the child owned from the moment it
  /// exists. Blocks the caller until the child has exec'd (or failed to).
  core::Result<Child> spawn(const SpawnOptions& options);
  /// The owner has reaped `pid`; orphans that waited behind it are reaped now.
  void disown(pid_t pid);
  /// Reaps every exited child nobody owns; returns how many.
  size_t reap_orphans();

 private:
  // Shared with the reactor's periodic timer, which may outlive this object briefly.
  struct State {
    std::mutex mu;
    std::unordered_set<pid_t> owned;
    std::unique_ptr<SessionLedger> ledger;  // set at construction, then immutable
  };
  struct Job;
  static size_t reap_orphans(State& state);
  static void schedule(Reactor& reactor, std::weak_ptr<State> state);
  void run_spawner();

  std::shared_ptr<Reactor> reactor_;
  std::shared_ptr<State> state_ = std::make_shared<State>();
  std::mutex jobs_mu_;
  std::condition_variable jobs_cv_;
  std::deque<Job*> jobs_;
  bool stopping_ = false;
  std::thread spawner_;
};

}  // namespace execd::process
