#include "commands/command_runner.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>

#include <spdlog/spdlog.h>

#include "core/envs_file.hpp"
#include "core/path_expand.hpp"
#include "process/spawn.hpp"

namespace execd::commands {
namespace {

const char* shell_path() {
  static const char* kShell = access("/bin/bash", X_OK) == 0 ? "/bin/bash" : "/bin/sh";
  return kShell;
}

}  // namespace

void escalate(process::Reactor& reactor, const std::shared_ptr<Command>& cmd, std::chrono::milliseconds grace,
              int step) {
  static constexpr int kSignals[] = {SIGINT, SIGTERM, SIGKILL};
  if (!cmd->signal_group(kSignals[step])) return;  // the whole group is gone
  if (step + 1 < 3) {
    // Timers capture the reactor (which runs them, so it is alive), never the runner.
    std::weak_ptr<Command> weak = cmd;
    reactor.after(grace, [&reactor, weak, grace, step] {
      if (auto c = weak.lock()) escalate(reactor, c, grace, step + 1);
    });
  }
}


core::Result<std::string> existing_directory(const std::string& cwd_in) {
  auto cwd = core::expand_path(cwd_in);
  if (!cwd) return cwd.error();
  struct stat st {};
  if (::stat(cwd->c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return core::make_error(core::Errc::invalid_argument, "cwd is not an existing directory: " + *cwd);
  }
  return cwd;
}

namespace {

std::map<std::string, std::string> envs_file_and(const std::string& envs_file,
                                                 const std::map<std::string, std::string>& extra) {
  std::map<std::string, std::string> env = core::read_envs_file(envs_file);
  for (const auto& [k, v] : extra) env[k] = v;
  return env;
}

constexpr std::chrono::milliseconds kCpuWatchInterval{250};

}  // namespace

std::vector<std::string> command_environment(const std::string& envs_file,
                                             const std::map<std::string, std::string>& extra) {
  return process::environment_with(envs_file_and(envs_file, extra));
}

std::vector<std::string> isolated_environment(const std::string& envs_file,
                                              const std::map<std::string, std::string>& extra) {
  std::vector<std::string> out;
  for (const auto& [k, v] : envs_file_and(envs_file, extra)) out.push_back(k + "=" + v);
  return out;
}

void watch_cpu(process::Reactor& reactor, const std::shared_ptr<Command>& cmd) {
  std::weak_ptr<Command> weak = cmd;
  reactor.after(kCpuWatchInterval, [&reactor, weak] {
    auto c = weak.lock();
    if (!c || !c->is_running() || !c->guard_) return;
    if (c->guard_->cpu_exceeded()) {
      c->guard_->record_kill(isolation::Limit::cpu_time_s);
      c->signal_group(SIGKILL);
      return;
    }
    watch_cpu(reactor, c);
  });
}

CommandRunner::CommandRunner(std::shared_ptr<process::Reactor> reactor, std::shared_ptr<process::ChildReaper> reaper,
                             std::shared_ptr<exec::ExecutionRegistry> executions, Options options)
    : reactor_(std::move(reactor)), reaper_(std::move(reaper)), executions_(std::move(executions)),
      options_(std::move(options)) {}

CommandRunner::~CommandRunner() { shutdown(); }

core::Result<std::shared_ptr<Command>> CommandRunner::start(CommandSpec spec) {
  return start(std::move(spec), options_.isolator ? options_.isolator->defaults() : isolation::Limits{});
}

core::Result<std::shared_ptr<Command>> CommandRunner::start(CommandSpec spec, const isolation::Limits& limits) {
  const bool guarded = ExecutionGuard::needed(limits);
  if (guarded && !options_.isolator) {
    return core::make_error(core::Errc::invalid_argument, "isolation and limits are not available in this daemon");
  }
  if (spec.command.empty() && spec.argv.empty()) return core::make_error(core::Errc::invalid_argument, "command is empty");
  if (spec.timeout.count() < 0) return core::make_error(core::Errc::invalid_argument, "timeout must not be negative");
  if (spec.gid && !spec.uid) return core::make_error(core::Errc::invalid_argument, "uid is required when gid is provided");
  if (!spec.cwd.empty()) {
    auto cwd = existing_directory(spec.cwd);
    if (!cwd) return cwd.error();
    spec.cwd = *cwd;
  }
  process::SpawnOptions so;
  so.argv = spec.argv.empty() ? std::vector<std::string>{shell_path(), "-c", spec.command} : spec.argv;
  so.pass_fds = spec.pass_fds;
  so.env = limits.level == isolation::Level::none ? command_environment(options_.envs_file, spec.envs)
                                                 : isolated_environment(options_.envs_file, spec.envs);
  so.cwd = spec.cwd;
  if (spec.uid) {
    auto user = process::lookup_user(std::to_string(*spec.uid));
    if (!user) return core::make_error(core::Errc::invalid_argument, "uid " + std::to_string(*spec.uid) + " does not exist");
    if (geteuid() != 0 && *spec.uid != geteuid()) {
      return core::make_error(core::Errc::permission_denied, "running as another uid needs the daemon to run as root");
    }
    so.uid = *spec.uid;
  }
  if (spec.gid) so.gid = *spec.gid;
  so.stdin_pipe = spec.stdin_open || !spec.stdin_data.empty();

  sweep();
  auto execution = executions_->create(!spec.kind.empty() ? spec.kind : spec.background ? "background-command" : "command");
  std::unique_ptr<ExecutionGuard> guard;
  if (guarded) {
    auto made = ExecutionGuard::make(*options_.isolator, limits, so, "c-" + execution->id());
    if (!made) {
      executions_->remove(execution->id());
      return made.error();
    }
    guard = std::move(made).value();
  }
  auto child = reaper_->spawn(so);
  if (!child) {
    execution->log()->close(exec::events::error("CommandExecError", child.error().message, {child.error().message}));
    executions_->remove(execution->id());
    return child.error();
  }
  return run(std::move(execution), std::move(spec), std::move(child).value(), std::move(guard));
}

std::shared_ptr<Command> CommandRunner::adopt(std::shared_ptr<exec::Execution> execution, CommandSpec spec,
                                              process::Child child, std::unique_ptr<ExecutionGuard> guard) {
  sweep();
  return run(std::move(execution), std::move(spec), std::move(child), std::move(guard));
}

std::shared_ptr<Command> CommandRunner::run(std::shared_ptr<exec::Execution> execution, CommandSpec spec,
                                            process::Child child, std::unique_ptr<ExecutionGuard> guard) {
  auto output = std::make_unique<OutputLog>(options_.spill_dir);
  auto cmd = std::make_shared<Command>(execution, std::move(spec), std::move(output));
  cmd->reactor_ = reactor_.get();
  cmd->reaper_ = reaper_.get();
  cmd->guard_ = std::move(guard);
  cmd->pid_ = child.pid;
  cmd->pidfd_ = std::move(child.pidfd);
  cmd->stdout_fd_ = std::move(child.stdout_fd);
  cmd->stderr_fd_ = std::move(child.stderr_fd);
  cmd->stdin_fd_ = std::move(child.stdin_fd);
  cmd->started_steady_ = std::chrono::steady_clock::now();
  execution->log()->append(exec::events::init(execution->id()));

  if (!cmd->spec_.stdin_data.empty()) {
    if (auto w = cmd->write_stdin(cmd->spec_.stdin_data, std::chrono::seconds(10)); !w) {
      spdlog::warn("command {}: {}", cmd->id(), w.error().message);
    }
  }
  if (!cmd->spec_.stdin_open) (void)cmd->close_stdin();

  {
    std::lock_guard<std::mutex> lock(mu_);
    commands_[cmd->id()] = cmd;
  }
  // From here on the reactor thread owns the pipes and the pidfd.
  std::weak_ptr<Command> weak = cmd;
  const int out_fd = cmd->stdout_fd_.get();
  const int err_fd = cmd->stderr_fd_.get();
  reactor_->watch(out_fd, [weak, out_fd](uint32_t) {
    if (auto c = weak.lock()) c->on_output(out_fd, false);
  });
  reactor_->watch(err_fd, [weak, err_fd](uint32_t) {
    if (auto c = weak.lock()) c->on_output(err_fd, true);
  });
  if (cmd->spec_.timeout.count() > 0) {
    process::Reactor* reactor = reactor_.get();
    const auto grace = options_.kill_grace;
    cmd->timeout_timer_ = reactor_->after(cmd->spec_.timeout, [reactor, grace, weak] {
      auto c = weak.lock();
      if (!c || !c->is_running()) return;
      {
        std::lock_guard<std::mutex> lock(c->mu_);
        c->timed_out_ = true;
      }
      escalate(*reactor, c, grace, 0);
    });
  }
  reactor_->watch(cmd->pidfd_.get(), [weak](uint32_t) {
    if (auto c = weak.lock()) c->on_exit();
  });
  if (cmd->guard_ && cmd->guard_->has_cgroup() && cmd->guard_->limits().get(isolation::Limit::cpu_time_s)) {
    watch_cpu(*reactor_, cmd);
  }
  return cmd;
}

std::shared_ptr<Command> CommandRunner::find(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = commands_.find(id);
  return it == commands_.end() ? nullptr : it->second;
}

core::Result<void> CommandRunner::interrupt(const std::string& id) {
  auto cmd = find(id);
  if (!cmd) return core::make_error(core::Errc::not_found, "command not found: " + id);
  if (!cmd->is_running()) return core::make_error(core::Errc::conflict, "command " + id + " is not running");
  escalate(*reactor_, cmd, options_.kill_grace, 0);
  return {};
}

void CommandRunner::sweep() {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  // At most once a second: a walk over every retained command on each start would make
  // starting cost grow with the retention.
  if (now - last_sweep_ < std::chrono::seconds(1)) return;
  last_sweep_ = now;
  for (auto it = commands_.begin(); it != commands_.end();) {
    const auto& c = it->second;
    if (!c->is_running() && now - c->finished_steady() > options_.retention) {
      it = commands_.erase(it);
    } else {
      ++it;
    }
  }
}

void CommandRunner::shutdown() {
  std::vector<std::shared_ptr<Command>> running;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, c] : commands_) {
      if (c->is_running()) running.push_back(c);
    }
  }
  for (const auto& c : running) c->signal_group(SIGKILL);
  // The reactor reaps them; wait briefly so no zombie outlives the daemon's last word.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  for (const auto& c : running) {
    while (c->is_running() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
}

}  // namespace execd::commands
