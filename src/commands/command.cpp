#include "commands/command.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "process/pipe_write.hpp"
#include "process/spawn.hpp"

namespace execd::commands {
namespace {

// Reads per readiness callback, so one chatty command cannot starve the others.
constexpr int kReadsPerWakeup = 16;

double timeval_ms(const timeval& tv) { return static_cast<double>(tv.tv_sec) * 1000.0 + tv.tv_usec / 1000.0; }

}  // namespace

Command::Command(std::shared_ptr<exec::Execution> execution, CommandSpec spec, std::unique_ptr<OutputLog> output)
    : execution_(std::move(execution)), spec_(std::move(spec)), output_(std::move(output)),
      started_at_(std::chrono::system_clock::now()) {}

CommandStatus Command::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  CommandStatus s;
  s.id = id();
  s.content = spec_.command;
  s.running = running_;
  s.exit_code = exit_code_;
  s.error = error_;
  s.started_at = started_at_;
  s.finished_at = finished_at_;
  return s;
}

bool Command::is_running() const {
  std::lock_guard<std::mutex> lock(mu_);
  return running_;
}

std::chrono::steady_clock::time_point Command::finished_steady() const {
  std::lock_guard<std::mutex> lock(mu_);
  return finished_steady_;
}

core::Result<void> Command::write_stdin(std::string_view bytes, std::chrono::milliseconds timeout) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!stdin_fd_.valid()) {
    return core::make_error(core::Errc::conflict,
                            "stdin of command " + id() + " is not open (start it with stdin_open, and before closing)");
  }
  size_t written = 0;
  auto r = process::write_all(stdin_fd_.get(), bytes, timeout, written);
  if (!r) return core::make_error(r.error().code, "command " + id() + ": " + r.error().message);
  return {};
}

core::Result<void> Command::close_stdin() {
  std::lock_guard<std::mutex> lock(mu_);
  stdin_fd_.reset();
  return {};
}

bool Command::signal_group(int sig) {
  // pid_ is set before the command is published and never changes. The group outlives
  // its leader while any member lives (and its id cannot be reused until then), so this
  // still reaches descendants after the shell itself has exited.
  {
    std::lock_guard<std::mutex> lock(mu_);
    interrupted_ = true;
  }
  // An isolated command is also found through its cgroup (setsid escapees; at namespace
  // level everything inside bwrap's sandbox).
  if (guard_) return guard_->signal(sig, pid_);
  return process::signal_group(pid_, sig);
}

void Command::emit_lines(const std::vector<std::string>& lines, bool is_stderr) {
  auto& log = *execution_->log();
  for (const auto& line : lines) log.append(is_stderr ? exec::events::stderr_text(line) : exec::events::stdout_text(line));
}

void Command::drain(int fd, bool is_stderr) {
  for (int i = 0; i < kReadsPerWakeup; ++i) {
    ssize_t n = 0;
    const std::string_view chunk = reactor_->read_into_scratch(fd, n);
    if (n > 0) {
      bool capped = false;
      // Past max_output_bytes the bytes are read and dropped: the writer never blocks on
      // a full pipe while it is being killed.
      const std::string_view kept = guard_ ? chunk.substr(0, guard_->admit_output(chunk.size(), &capped)) : chunk;
      output_->append(kept);
      // A full event log takes no more lines: skip splitting them (the bytes are kept).
      if (!kept.empty() && execution_->log()->accepting()) {
        emit_lines((is_stderr ? stderr_lines_ : stdout_lines_).feed(kept), is_stderr);
      }
      if (capped) on_output_capped();
      continue;
    }
    if (n < 0 && (errno == EINTR)) continue;
    if (n < 0 && errno == EAGAIN) return;
    // EOF (or a read error): this stream is done.
    reactor_->unwatch(fd);
    (is_stderr ? stderr_fd_ : stdout_fd_).reset();
    return;
  }
}

void Command::on_output(int fd, bool is_stderr) { drain(fd, is_stderr); }

void Command::on_output_capped() {
  const auto cap = guard_->limits().get(isolation::Limit::output_bytes).value_or(0);
  execution_->log()->append(exec::events::status("output truncated at " + std::to_string(cap) +
                                                 " bytes (max_output_bytes): the command is killed"));
  guard_->record_kill(isolation::Limit::output_bytes);
  signal_group(SIGKILL);
}

void Command::on_exit() {
  int status = 0;
  rusage usage{};
  const pid_t r = wait4(pid_, &status, WNOHANG, &usage);
  if (r == 0) return;  // spurious wake-up
  reactor_->unwatch(pidfd_.get());
  pidfd_.reset();
  if (r > 0) reaper_->disown(pid_);
  if (r < 0) {
    spdlog::error("command {}: wait4 failed: {}", id(), std::strerror(errno));
    status = 0;
  }
  finish(status, usage);
}

void Command::finish(int wait_status, const rusage& usage) {
  // Which limit ended it is read before anything left in the cgroup is killed (that kill
  // is ours, not a limit's); then nothing of the execution may outlive it.
  std::optional<isolation::LimitHit> hit;
  if (guard_) {
    hit = guard_->limit_hit(wait_status);
    guard_->finish_processes();
  }
  // Take what the process wrote before it exited; descendants that still hold the pipes
  // do not keep the command open.
  for (bool is_stderr : {false, true}) {
    auto& fd = is_stderr ? stderr_fd_ : stdout_fd_;
    if (!fd.valid()) continue;
    const int raw = fd.get();
    for (int guard = 0; guard < 1024 && fd.valid(); ++guard) {
      const uint64_t before = output_->size();
      drain(raw, is_stderr);
      if (output_->size() == before) break;
    }
    if (fd.valid()) {
      reactor_->unwatch(raw);
      fd.reset();
    }
  }
  // No more output: a retained command keeps its bytes but no descriptor.
  output_->seal();
  emit_lines(stdout_lines_.finish(), false);
  emit_lines(stderr_lines_.finish(), true);
  if (timeout_timer_) reactor_->cancel(*timeout_timer_);

  const auto elapsed = std::chrono::steady_clock::now() - started_steady_;
  const int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count();
  const auto& before = spec_.usage_before;
  nlohmann::json accounting = {
      {"duration_ms", ms},
      {"cpu_time_ms", std::max<int64_t>(0, static_cast<int64_t>(timeval_ms(usage.ru_utime) + timeval_ms(usage.ru_stime)) -
                                               before.cpu.count())},
      {"peak_memory_mb", static_cast<double>(usage.ru_maxrss) / 1024.0},
      // Block I/O the process and its waited-for children did (512-byte units in rusage).
      {"io_read_bytes", std::max<int64_t>(0, static_cast<int64_t>(usage.ru_inblock) * 512 -
                                                 static_cast<int64_t>(before.io_read_bytes))},
      {"io_write_bytes", std::max<int64_t>(0, static_cast<int64_t>(usage.ru_oublock) * 512 -
                                                  static_cast<int64_t>(before.io_write_bytes))},
  };

  std::string error;
  int exit_code = -1;
  bool timed_out = false;
  bool interrupted = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    timed_out = timed_out_;
    interrupted = interrupted_;
  }
  // Stopping a command stops all of it: descendants that ignored SIGINT (background jobs
  // of a non-interactive shell do) must not outlive the shell that was interrupted. Nor
  // may anything of an invocation outlive it, however it ended.
  if (interrupted || spec_.end_group_on_exit) process::signal_group(pid_, SIGKILL);
  if (WIFEXITED(wait_status)) {
    exit_code = WEXITSTATUS(wait_status);
    if (exit_code != 0) error = "exit status " + std::to_string(exit_code);
  } else if (WIFSIGNALED(wait_status)) {
    const int sig = WTERMSIG(wait_status);
    error = std::string("signal: ") + (sigdescr_np(sig) != nullptr ? sigdescr_np(sig) : std::to_string(sig).c_str());
    for (auto& c : error) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  if (timed_out) error = "timeout after " + std::to_string(spec_.timeout.count()) + " ms (" + (error.empty() ? "exited" : error) + ")";
  accounting["exit_code"] = exit_code;
  if (guard_) {
    guard_->add_usage(accounting);
    // No process left before the terminal event says "done"; the emptied cgroup and a
    // fresh workspace are removed by the pool's thread (CgroupPool), off this path.
    guard_->finish();
  }
  if (hit) {
    accounting["killed"] = ExecutionGuard::killed_json(*hit);
    error = hit->message + (error.empty() ? std::string() : " (" + error + ")");
  }

  {
    std::lock_guard<std::mutex> lock(mu_);
    running_ = false;
    exit_code_ = exit_code;
    error_ = error;
    finished_at_ = std::chrono::system_clock::now();
    finished_steady_ = std::chrono::steady_clock::now();
    stdin_fd_.reset();
  }
  if (spec_.on_finish) {
    spec_.on_finish(CommandOutcome{exit_code, error, timed_out, hit.has_value(), std::move(accounting), execution_});
    return;
  }
  auto& log = *execution_->log();
  if (exit_code == 0 && !timed_out && !hit) {
    log.close(exec::events::execution_complete(ms, accounting));
  } else {
    log.close(exec::events::error("CommandExecError", std::to_string(exit_code), {error}, accounting));
  }
}

}  // namespace execd::commands
