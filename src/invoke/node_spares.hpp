#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/result.hpp"
#include "core/unique_fd.hpp"
#include "invoke/handler_bootstrap.hpp"
#include "isolation/limits.hpp"
#include "process/child_reaper.hpp"
#include "process/spawn.hpp"

namespace execd::invoke {

/// Warm starts for JavaScript and TypeScript handlers: node has no fork(), so instead of
/// a fork server this keeps single-use interpreters started ahead ("spares", as
/// serverless platforms do for runtimes that cannot fork). A spare is `node -e` with the
/// handler bootstrap (node_spare_argv) that has loaded what does not depend on any
/// request (TypeScript: the compiler, run once) and blocks reading its stdin. take()
/// hands one to exactly one invocation; the caller applies the invocation's cgroup and
/// rlimits to it (ChildSteps::apply_to) before writing the request to its stdin, so they
/// hold before any user code runs, and the process exits with the invocation: nothing of
/// one invocation can reach another. The taken spare is replaced off the request path.
///
/// Spares are kept per flavour (language x isolation level none | process), each flavour
/// from its first take() on (an idle daemon has none), `per_flavour` of each. A spare is
/// a child of the daemon (ChildReaper: it dies with the daemon) in its own session, with
/// a PATH-only environment plus the variables node reads only when it starts (startup
/// variables: NODE_*, UV_*, OPENSSL_*, LANG, LANGUAGE, LC_*), taken from the environment
/// its level gives a command; level-process spares are started with no_new_privs (which
/// a running process cannot be given). Its stdin, stdout and stderr are pipes and its
/// descriptor 3 a fresh memfd, the result channel, all handed over with it.
///
/// One thread (the starter) starts spares and, once a second, reaps those that died
/// idle; after such a death or a failed start, that flavour waits `retry_after` before
/// the next. The destructor kills the idle spares and waits for them; taken ones belong
/// to their taker. Thread-safe.
class NodeSpares {
 public:
  struct Options {
    std::string node = "node";          ///< looked up in the daemon's PATH, as a cold start at level none does
    std::string typescript_module_dir;  ///< empty: no TypeScript spares
    std::string envs_file;              ///< EXECD_ENVS lines, as commands get them
    size_t per_flavour = 1;             ///< spares kept ready per flavour used so far
    std::chrono::milliseconds retry_after{1000};
  };

  /// One started interpreter waiting for its request.
  struct Spare {
    process::Child child;                  ///< pid (its own session), pidfd, stdin/stdout/stderr pipes
    core::UniqueFd channel;                ///< its descriptor 3: the result memfd
    std::vector<std::string> startup_env;  ///< the startup variables it was started with, sorted
  };

  NodeSpares(std::shared_ptr<process::ChildReaper> reaper, Options options);
  ~NodeSpares();
  NodeSpares(const NodeSpares&) = delete;
  NodeSpares& operator=(const NodeSpares&) = delete;

  /// True for variables node reads only when it starts (a spare cannot honour a change).
  static bool read_at_start(std::string_view key);
  /// The startup variables of `env` (KEY=VALUE), sorted.
  static std::vector<std::string> startup_variables(const std::vector<std::string>& env);

  /// A spare for an invocation of `language` (javascript or typescript) at `level` (none
  /// or process) whose whole environment will be `env`. unavailable, naming why, when
  /// none can serve it: none started yet or all taken (one is started for the next
  /// invocation), or `env`'s startup variables differ from what spares of its flavour
  /// start with. Never waits for a start.
  core::Result<Spare> take(Language language, isolation::Level level, const std::vector<std::string>& env);

  /// Kills a taken spare that will not be used, and reaps it.
  void discard(Spare& spare);

  /// The pids of the spares waiting now (tests, the bench).
  [[nodiscard]] std::vector<pid_t> idle() const;

 private:
  static constexpr size_t kFlavours = 4;  // (javascript | typescript) x (none | process)
  struct Flavour {
    bool used = false;
    std::deque<Spare> ready;
    std::chrono::steady_clock::time_point not_before{};
  };
  static size_t index(Language language, isolation::Level level);
  /// The startup variables a spare of flavour `f` starts with now.
  std::vector<std::string> startup_env_of(size_t f) const;
  core::Result<void> start_one(size_t f, Spare& spare);
  void run_starter();
  /// Whether an idle spare has exited (then reaped and logged). Under mu_.
  bool ended_idle(const Spare& spare);
  /// Drops the idle spares that have exited; true when some had. Under mu_.
  bool reap_dead(Flavour& flavour);

  std::shared_ptr<process::ChildReaper> reaper_;
  Options options_;
  std::string node_path_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::array<Flavour, kFlavours> flavours_;
  bool stopping_ = false;
  std::thread starter_;
};

}  // namespace execd::invoke
