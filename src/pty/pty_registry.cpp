#include "pty/pty_registry.hpp"

#include <pwd.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include "core/envs_file.hpp"
#include "core/id.hpp"
#include "core/path_expand.hpp"

namespace execd::pty {

PtyRegistry::PtyRegistry(std::shared_ptr<process::Reactor> reactor, std::shared_ptr<process::ChildReaper> reaper,
                         Options options)
    : reactor_(std::move(reactor)), reaper_(std::move(reaper)), options_(std::move(options)) {
  reaper_thread_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      stop_cv_.wait_for(lock, options_.reap_every);
      if (stopping_) break;
      lock.unlock();
      try {
        reap_idle();
      } catch (const std::exception& e) {
        spdlog::error("pty reaper: {}", e.what());
      }
      lock.lock();
    }
  });
}

PtyRegistry::~PtyRegistry() {
  shutdown();
}

std::vector<std::string> PtyRegistry::base_environment() const {
  std::map<std::string, std::string> env;
  env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  env["SHELL"] = "/bin/bash";
  const char* lang = std::getenv("LANG");
  env["LANG"] = lang != nullptr && *lang != '\0' ? lang : "C.UTF-8";
  // The user's own identity from the passwd db (the daemon's HOME may be anything).
  if (const passwd* pw = ::getpwuid(::geteuid()); pw != nullptr) {
    env["HOME"] = pw->pw_dir;
    env["USER"] = pw->pw_name;
    env["LOGNAME"] = pw->pw_name;
  }
  for (const auto& [k, v] : core::read_envs_file(options_.envs_file)) env[k] = v;
  std::vector<std::string> out;
  for (const auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

core::Result<std::shared_ptr<PtySession>> PtyRegistry::create(PtySpec spec) {
  if (spec.cols == 0 || spec.rows == 0 || spec.cols > 1000 || spec.rows > 1000) {
    return core::make_error(core::Errc::invalid_argument, "cols and rows must be 1..1000");
  }
  if (!spec.cwd.empty()) {
    auto expanded = core::expand_path(spec.cwd);
    if (!expanded) return expanded.error();
    struct stat st {};
    if (::stat(expanded->c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return core::make_error(core::Errc::invalid_argument, "cwd '" + spec.cwd + "' is not a directory");
    }
    spec.cwd = *expanded;
  }
  PtySession::Deps deps{reactor_, reaper_, base_environment(), options_.isolator, options_.scrollback};
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return core::make_error(core::Errc::unavailable, "the daemon is stopping");
  if (sessions_.size() >= options_.max_sessions) {
    return core::make_error(core::Errc::capacity, "pty sessions are at their limit of " +
                                                      std::to_string(options_.max_sessions) +
                                                      " (--max-pty-sessions); delete one first");
  }
  const std::string id = core::new_id();
  auto session = std::make_shared<PtySession>(id, std::move(spec), std::move(deps));
  sessions_.emplace(id, session);
  return session;
}

std::shared_ptr<PtySession> PtyRegistry::find(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : it->second;
}

core::Result<void> PtyRegistry::remove(const std::string& id) {
  std::shared_ptr<PtySession> session;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const auto it = sessions_.find(id);
    if (it == sessions_.end()) return core::make_error(core::Errc::not_found, "pty session " + id + " not found");
    session = std::move(it->second);
    sessions_.erase(it);
  }
  session->terminate();
  return {};
}

size_t PtyRegistry::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sessions_.size();
}

size_t PtyRegistry::reap_idle() {
  const auto now = std::chrono::steady_clock::now();
  std::vector<std::shared_ptr<PtySession>> idle;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      const auto since = it->second->idle_since();
      if (since && now - *since >= options_.idle_timeout) {
        idle.push_back(std::move(it->second));
        it = sessions_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (const auto& s : idle) {
    spdlog::info("pty {}: removed after {} ms unattached", s->id(), options_.idle_timeout.count());
    s->terminate();
  }
  return idle.size();
}

void PtyRegistry::shutdown() {
  std::unordered_map<std::string, std::shared_ptr<PtySession>> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    all.swap(sessions_);
  }
  stop_cv_.notify_all();
  if (reaper_thread_.joinable()) reaper_thread_.join();
  for (auto& [id, s] : all) s->terminate();
}

}  // namespace execd::pty
