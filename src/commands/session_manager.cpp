#include "commands/session_manager.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "commands/command_runner.hpp"
#include "core/id.hpp"
#include "core/path_expand.hpp"

namespace execd::commands {
namespace {

core::Error session_not_found(const std::string& id) {
  return core::make_error(core::Errc::context_not_found, "session not found: " + id);
}

}  // namespace

SessionManager::SessionManager(std::shared_ptr<process::Reactor> reactor, std::shared_ptr<process::ChildReaper> reaper,
                               std::shared_ptr<exec::ExecutionRegistry> executions, Options options)
    : reactor_(std::move(reactor)), reaper_(std::move(reaper)), executions_(std::move(executions)),
      options_(std::move(options)) {}

SessionManager::~SessionManager() { shutdown(); }

core::Result<std::shared_ptr<BashSession>> SessionManager::create(const std::string& cwd) {
  return create(cwd, options_.isolator ? options_.isolator->defaults() : isolation::Limits{});
}

core::Result<std::shared_ptr<BashSession>> SessionManager::create(const std::string& cwd_in,
                                                                  const isolation::Limits& limits) {
  std::string cwd;
  if (!cwd_in.empty()) {
    auto expanded = core::expand_path(cwd_in);
    if (!expanded) return expanded.error();
    cwd = *expanded;
    std::error_code ec;
    std::filesystem::create_directories(cwd, ec);
    if (!std::filesystem::is_directory(cwd)) {
      return core::make_error(core::Errc::invalid_argument,
                              "cwd " + cwd + " is not a directory and cannot be created" +
                                  (ec ? ": " + ec.message() : std::string()));
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Sessions whose shell exited (`exit` in a run) no longer count against the limit.
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      it = it->second->is_alive() ? std::next(it) : sessions_.erase(it);
    }
    if (sessions_.size() >= options_.max_sessions) {
      return core::make_error(core::Errc::unavailable, "too many bash sessions (" +
                                                           std::to_string(options_.max_sessions) +
                                                           "); delete one with DELETE /session/{id}");
    }
  }
  BashSession::Options so{options_.kill_grace,
                          limits.level == isolation::Level::none ? command_environment(options_.envs_file, {})
                                                                 : isolated_environment(options_.envs_file, {}),
                          limits, options_.isolator};
  auto session = BashSession::start(core::new_uuid(), cwd, reactor_, reaper_, std::move(so));
  if (!session) return session.error();
  std::lock_guard<std::mutex> lock(mu_);
  sessions_[(*session)->id()] = *session;
  return *session;
}

std::shared_ptr<BashSession> SessionManager::find(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : it->second;
}

bool SessionManager::contains(const std::string& id) const { return find(id) != nullptr; }

std::vector<std::string> SessionManager::ids() const {
  std::vector<std::string> out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, s] : sessions_) {
      if (s->is_alive()) out.push_back(id);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

core::Result<std::string> SessionManager::default_session() {
  std::lock_guard<std::mutex> lock(default_mu_);
  if (!default_id_.empty() && contains(default_id_) && find(default_id_)->is_alive()) return default_id_;
  auto s = create({});
  if (!s) return s.error();
  default_id_ = (*s)->id();
  return default_id_;
}

core::Result<std::shared_ptr<exec::Execution>> SessionManager::run(const std::string& id, SessionRunSpec spec) {
  if (spec.command.empty()) return core::make_error(core::Errc::invalid_argument, "field 'command' is required and must not be empty");
  if (spec.command.find('\0') != std::string::npos || spec.cwd.find('\0') != std::string::npos) {
    return core::make_error(core::Errc::invalid_argument, "command and cwd must not contain NUL bytes");
  }
  if (spec.timeout.count() < 0) return core::make_error(core::Errc::invalid_argument, "timeout must not be negative");
  auto session = find(id);
  if (!session) return session_not_found(id);
  // In a sandboxed session the path is the sandbox's, checked by the shell's own cd.
  if (!spec.cwd.empty() && !session->in_namespace()) {
    auto cwd = existing_directory(spec.cwd);
    if (!cwd) return cwd.error();
    spec.cwd = *cwd;
  }
  if (session->is_busy()) return core::make_error(core::Errc::conflict, "session " + id + " is busy with another run");
  auto execution = executions_->create("session-run");
  if (auto r = session->run(spec, execution); !r) {
    executions_->remove(execution->id());
    return r.error();
  }
  return execution;
}

core::Result<void> SessionManager::interrupt(const std::string& id) {
  auto session = find(id);
  if (!session) return session_not_found(id);
  return session->interrupt();
}

core::Result<void> SessionManager::remove(const std::string& id) {
  std::shared_ptr<BashSession> session;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return session_not_found(id);
    session = std::move(it->second);
    sessions_.erase(it);
  }
  session->terminate();
  return {};
}

void SessionManager::shutdown() {
  std::unordered_map<std::string, std::shared_ptr<BashSession>> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    all.swap(sessions_);
  }
  for (auto& [id, s] : all) s->terminate();
}

}  // namespace execd::commands
