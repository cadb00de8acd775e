#pragma once

#include <sys/types.h>

#include <memory>
#include <mutex>
#include <unordered_set>

#include "core/result.hpp"
#include "process/reactor.hpp"
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
class ChildReaper {
 public:
  explicit ChildReaper(std::shared_ptr<Reactor> reactor);
  ~ChildReaper();
  ChildReaper(const ChildReaper&) = delete;
  ChildReaper& operator=(const ChildReaper&) = delete;

  /// process::spawn, with the child owned from the moment it exists.
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
  };
  static size_t reap_orphans(State& state);
  static void schedule(Reactor& reactor, std::weak_ptr<State> state);

  std::shared_ptr<Reactor> reactor_;
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

}  // namespace execd::process
