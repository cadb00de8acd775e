#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "isolation/child_steps.hpp"
#include "process/child_reaper.hpp"
#include "process/reactor.hpp"

namespace execd::invoke {

/// How a child of the zygote ended, as the zygote reported it after reaping it (wait4):
/// the zygote is its parent, so only the zygote can collect its status and rusage.
struct ZygoteExit {
  pid_t pid = -1;
  int wait_status = 0;
  rusage usage{};     ///< ru_utime, ru_stime, ru_maxrss, ru_inblock, ru_oublock
  bool lost = false;  ///< the zygote died first (its children die with it): no status
};

/// One child to fork: its descriptors (the zygote gets copies over SCM_RIGHTS; the
/// caller keeps and closes its own), its cwd and whole environment, and the isolation
/// steps it applies to itself before user code (null: none).
struct ZygoteRequest {
  int stdin_fd = -1, stdout_fd = -1, stderr_fd = -1, result_fd = -1;
  std::string cwd;
  std::vector<std::string> env;
  const isolation::ChildSteps* steps = nullptr;
};

/// The Python fork server (zygote_program()) and the daemon's ends of its control and work
/// sockets (requests go on the work socket, straight to the zygote's spare child).
///
/// The process starts lazily, on the first fork_child(), as a child of the daemon's
/// spawner with an environment of PATH only, no descriptor of the daemon's but the two
/// sockets, and stdio on /dev/null: it never holds the daemon's token, environment or
/// descriptors, and it runs no user code. A zygote that died is started again by the
/// next fork_child() (at most once a second, so a zygote that cannot start costs cold
/// starts, not a loop). stop() (and the destructor) kills it; its children die with it
/// (PR_SET_PDEATHSIG). Replies are read on the reactor thread; fork_child() from any
/// thread.
class Zygote {
 public:
  struct Options {
    std::string python = "python3";
    std::chrono::milliseconds ready_wait{5000};  ///< how long a request waits for a starting zygote
    /// How long it waits for the fork's answer; a zygote that misses it is killed (and
    /// started again by the next request).
    std::chrono::milliseconds fork_wait{10000};
  };

  Zygote(std::shared_ptr<process::Reactor> reactor, std::shared_ptr<process::ChildReaper> reaper, Options options);
  ~Zygote();  ///< stop()
  Zygote(const Zygote&) = delete;
  Zygote& operator=(const Zygote&) = delete;

  /// Starts the zygote when it is down (not more than once a second) and waits for it to
  /// serve, at most ready_wait; unavailable otherwise. fork_child() does this too; calling
  /// it first keeps a first start's wait out of the child's own timing.
  core::Result<void> ready();

  /// Forks one child for `request` and returns its pid (its own session and process
  /// group). `on_exit` runs once on the reactor thread when the child has ended, or with
  /// `lost` when the zygote died first; it may run before this returns. unavailable
  /// when the zygote cannot be used now (not started in time, died, refused the
  /// request): the caller starts cold instead.
  core::Result<pid_t> fork_child(const ZygoteRequest& request, std::function<void(ZygoteExit)> on_exit);

  /// The zygote's pid while it runs, else -1.
  [[nodiscard]] pid_t pid() const;
  /// Kills the zygote (and so its children). A later fork_child() starts a new one.
  void stop();

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace execd::invoke
