#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "commands/bash_session.hpp"
#include "core/result.hpp"
#include "exec/execution_registry.hpp"
#include "process/child_reaper.hpp"
#include "process/reactor.hpp"

namespace execd::commands {

/// Bash sessions by id (OpenSandbox /session, compat-notes §4). Thread-safe.
class SessionManager {
 public:
  struct Options {
    std::chrono::milliseconds kill_grace{3000};
    std::string envs_file;    ///< EXECD_ENVS, as for commands
    size_t max_sessions = 64;  ///< live shells at once
    /// Defaults and enforcement of isolation; null: sessions run at level none.
    std::shared_ptr<isolation::Isolator> isolator;
  };

  SessionManager(std::shared_ptr<process::Reactor> reactor, std::shared_ptr<process::ChildReaper> reaper,
                 std::shared_ptr<exec::ExecutionRegistry> executions, Options options);
  ~SessionManager();  ///< ends every session

  /// A new shell in `cwd` (`~` and $VAR expanded, created when missing; empty: the
  /// daemon's). unavailable past max_sessions.
  core::Result<std::shared_ptr<BashSession>> create(const std::string& cwd);
  /// The same at `limits` for the whole session (see BashSession::Options::limits). At
  /// namespace level `cwd` is the sandbox's workspace (empty: a fresh one, removed with
  /// the session), and the environment is EXECD_ENVS only.
  core::Result<std::shared_ptr<BashSession>> create(const std::string& cwd, const isolation::Limits& limits);
  /// Null when isolation is not configured.
  [[nodiscard]] const std::shared_ptr<isolation::Isolator>& isolator() const { return options_.isolator; }
  /// Starts one run; its events are in the returned Execution. context_not_found for an
  /// unknown (or deleted) id, invalid_argument for bad fields, conflict when busy.
  core::Result<std::shared_ptr<exec::Execution>> run(const std::string& id, SessionRunSpec spec);
  /// Interrupts the current run (the session lives on).
  core::Result<void> interrupt(const std::string& id);
  /// Ends the session and every process in it.
  core::Result<void> remove(const std::string& id);
  [[nodiscard]] bool contains(const std::string& id) const;
  /// Ids of every live session, sorted.
  [[nodiscard]] std::vector<std::string> ids() const;
  /// The session that `/code` runs bash in when no context id is given, created on
  /// first use (and again after it was deleted).
  core::Result<std::string> default_session();
  void shutdown();

 private:
  std::shared_ptr<BashSession> find(const std::string& id) const;

  std::shared_ptr<process::Reactor> reactor_;
  std::shared_ptr<process::ChildReaper> reaper_;
  std::shared_ptr<exec::ExecutionRegistry> executions_;
  Options options_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<BashSession>> sessions_;
  std::mutex default_mu_;
  std::string default_id_;
};

}  // namespace execd::commands
