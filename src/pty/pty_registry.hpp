#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/result.hpp"
#include "pty/pty_session.hpp"

namespace execd::pty {

/// The PTY sessions by id: create, find, remove, a cap on how many exist at once, and a
/// reaper thread that removes sessions nobody has held for `idle_timeout` (an exited
/// shell's included). Thread-safe.
class PtyRegistry {
 public:
  struct Options {
    size_t max_sessions = 32;                                ///< more: capacity (503)
    std::chrono::milliseconds idle_timeout{30 * 60 * 1000};  ///< unattached this long: removed
    std::chrono::milliseconds reap_every{5000};
    std::string envs_file;  ///< --envs-file, under the request's envs
    /// Defaults and enforcement of isolation; null: sessions run at level none.
    std::shared_ptr<isolation::Isolator> isolator;
    Scrollback::Options scrollback;
  };

  PtyRegistry(std::shared_ptr<process::Reactor> reactor, std::shared_ptr<process::ChildReaper> reaper, Options options);
  ~PtyRegistry();  ///< shutdown()
  PtyRegistry(const PtyRegistry&) = delete;
  PtyRegistry& operator=(const PtyRegistry&) = delete;

  /// A new session (its shell starts on the first attach). invalid_argument for a cwd that
  /// is not a directory or bad cols/rows, capacity when max_sessions exist.
  core::Result<std::shared_ptr<PtySession>> create(PtySpec spec);
  /// Null when unknown.
  [[nodiscard]] std::shared_ptr<PtySession> find(const std::string& id) const;
  /// Kills the session's processes (its holder then reads the exit) and forgets it. not_found
  /// when unknown.
  core::Result<void> remove(const std::string& id);
  [[nodiscard]] size_t size() const;
  /// Null when isolation is not configured.
  [[nodiscard]] const std::shared_ptr<isolation::Isolator>& isolator() const { return options_.isolator; }
  /// Removes sessions idle past the timeout now; returns how many (the reaper calls it).
  size_t reap_idle();
  /// Ends every session and the reaper thread.
  void shutdown();

  /// The environment a shell starts from: PATH, HOME, USER, SHELL, LANG and the
  /// envs file's variables; never the daemon's own environment.
  [[nodiscard]] std::vector<std::string> base_environment() const;

 private:
  std::shared_ptr<process::Reactor> reactor_;
  std::shared_ptr<process::ChildReaper> reaper_;
  Options options_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<PtySession>> sessions_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread reaper_thread_;
};

}  // namespace execd::pty
