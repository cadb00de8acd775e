#include "commands/bash_session.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <thread>

#include <spdlog/spdlog.h>

#include "core/id.hpp"
#include "exec/event.hpp"
#include "process/pipe_write.hpp"
#include "process/proc_table.hpp"
#include "process/spawn.hpp"

namespace execd::commands {
namespace {

// $1 is the marker. `return` from the INT trap leaves __execd_run (ending the run, the
// shell lives on); between runs it fails harmlessly. A cd that fails ends the run with 1.
constexpr const char* kLoop = R"(__execd_mark=$1; shift
__execd_run() { eval "$1"; }
trap 'return 130 2>/dev/null' INT
while IFS= read -r -d '' __execd_seq && IFS= read -r -d '' __execd_cwd && IFS= read -r -d '' __execd_cmd; do
  if [ -n "$__execd_cwd" ] && ! cd -- "$__execd_cwd"; then
    printf '\n%s %s %s\n' "$__execd_mark" "$__execd_seq" 1; continue
  fi
  __execd_run "$__execd_cmd" </dev/null
  printf '\n%s %s %s\n' "$__execd_mark" "$__execd_seq" "$?"
done
)";

constexpr int kReadsPerWakeup = 16;
constexpr std::chrono::seconds kSubmitTimeout{10};

}  // namespace

BashSession::BashSession(std::string id, std::shared_ptr<process::Reactor> reactor,
                         std::shared_ptr<process::ChildReaper> reaper, Options options)
    : id_(std::move(id)), reactor_(std::move(reactor)), reaper_(std::move(reaper)), options_(std::move(options)),
      marker_("__execd_done_" + core::random_hex(16)) {}

BashSession::~BashSession() {
  if (out_fd_.valid()) reactor_->unwatch(out_fd_.get());
  if (pidfd_.valid()) reactor_->unwatch(pidfd_.get());
}

core::Result<std::shared_ptr<BashSession>> BashSession::start(std::string id, const std::string& cwd,
                                                             std::shared_ptr<process::Reactor> reactor,
                                                             std::shared_ptr<process::ChildReaper> reaper,
                                                             Options options) {
  std::shared_ptr<BashSession> s(new BashSession(std::move(id), std::move(reactor), std::move(reaper), std::move(options)));
  process::SpawnOptions so;
  so.argv = {"bash", "--noprofile", "--norc", "-c", kLoop, "bash", s->marker_};
  so.env = s->options_.env;
  so.cwd = cwd;
  so.stdin_pipe = true;
  so.merge_stderr = true;
  auto child = s->reaper_->spawn(so);
  if (!child) return child.error();
  s->pid_ = child->pid;
  s->pidfd_ = std::move(child->pidfd);
  s->out_fd_ = std::move(child->stdout_fd);
  s->in_fd_ = std::move(child->stdin_fd);
  std::weak_ptr<BashSession> weak = s;
  s->reactor_->watch(s->out_fd_.get(), [weak](uint32_t) {
    if (auto p = weak.lock()) p->on_output();
  });
  s->reactor_->watch(s->pidfd_.get(), [weak](uint32_t) {
    if (auto p = weak.lock()) p->on_exit();
  });
  return s;
}

bool BashSession::is_alive() const {
  std::lock_guard<std::mutex> lock(mu_);
  return alive_;
}

bool BashSession::is_busy() const {
  std::lock_guard<std::mutex> lock(mu_);
  return run_.has_value();
}

core::Result<void> BashSession::run(const SessionRunSpec& spec, std::shared_ptr<exec::Execution> execution) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!alive_) return core::make_error(core::Errc::conflict, "session " + id_ + " has ended (its shell exited)");
  if (run_) return core::make_error(core::Errc::conflict, "session " + id_ + " is busy with another run");
  Run r;
  r.seq = next_seq_++;
  r.execution = std::move(execution);
  r.started = std::chrono::steady_clock::now();
  r.timeout = spec.timeout;
  auto cpu = process::cpu_time_with_children_ms(pid_);
  r.cpu_before_ms = cpu ? *cpu : 0;
  r.execution->log()->append(exec::events::init(id_));
  std::string record = std::to_string(r.seq);
  record += '\0';
  record += spec.cwd;
  record += '\0';
  record += spec.command;
  record += '\0';
  size_t written = 0;
  if (auto w = process::write_all(in_fd_.get(), record, kSubmitTimeout, written); !w) {
    // A half-written record would desynchronise the loop: the shell is unusable now.
    process::signal_group(pid_, SIGKILL);
    alive_ = false;
    r.execution->log()->close(exec::events::error("CommandExecError", "-1", {"session shell is not accepting commands"}));
    return core::make_error(core::Errc::unavailable, "session " + id_ + ": " + w.error().message);
  }
  if (spec.timeout.count() > 0) {
    std::weak_ptr<BashSession> weak = weak_from_this();
    const uint64_t seq = r.seq;
    r.timer = reactor_->after(spec.timeout, [weak, seq] {
      auto s = weak.lock();
      if (!s) return;
      {
        std::lock_guard<std::mutex> lock(s->mu_);
        if (s->run_ && s->run_->seq == seq) s->run_->timed_out = true;
      }
      s->escalate(seq, 0);
    });
  }
  run_ = std::move(r);
  return {};
}

core::Result<void> BashSession::interrupt() {
  uint64_t seq = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!run_) return core::make_error(core::Errc::conflict, "session " + id_ + " has no run in progress");
    seq = run_->seq;
  }
  escalate(seq, 0);
  return {};
}

void BashSession::signal_children(int sig) {
  // Everything in the shell's group but the shell itself: the run's processes.
  for (pid_t p : process::group_members(pid_)) {
    if (p != pid_) ::kill(p, sig);
  }
}

void BashSession::escalate(uint64_t seq, int step) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!run_ || run_->seq != seq || !alive_) return;
  }
  switch (step) {
    case 0: process::signal_group(pid_, SIGINT); break;  // the shell traps it and ends the run
    case 1: signal_children(SIGTERM); break;
    case 2: signal_children(SIGKILL); break;
    default:
      // The shell itself does not give up the run (a builtin loop with INT trapped):
      // the session cannot be saved.
      spdlog::warn("session {}: run {} ignores every signal; killing the shell", id_, seq);
      process::signal_group(pid_, SIGKILL);
      return;
  }
  std::weak_ptr<BashSession> weak = weak_from_this();
  reactor_->after(options_.kill_grace, [weak, seq, step] {
    if (auto s = weak.lock()) s->escalate(seq, step + 1);
  });
}

void BashSession::on_output() {
  for (int i = 0; i < kReadsPerWakeup; ++i) {
    ssize_t n = 0;
    const std::string_view chunk = reactor_->read_into_scratch(out_fd_.get(), n);
    if (n > 0) {
      for (const auto& line : lines_.feed(chunk)) handle_line(line);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    reactor_->unwatch(out_fd_.get());
    out_fd_.reset();
    return;
  }
}

void BashSession::handle_line(const std::string& line) {
  if (line.size() > marker_.size() && line.compare(0, marker_.size(), marker_) == 0 && line[marker_.size()] == ' ') {
    // "<marker> <seq> <status>"
    const char* p = line.data() + marker_.size() + 1;
    const char* end = line.data() + line.size();
    uint64_t seq = 0;
    int status = 0;
    auto r1 = std::from_chars(p, end, seq);
    if (r1.ec == std::errc() && r1.ptr < end && *r1.ptr == ' ' &&
        std::from_chars(r1.ptr + 1, end, status).ec == std::errc()) {
      bool current = false;
      {
        std::lock_guard<std::mutex> lock(mu_);
        current = run_ && run_->seq == seq;
      }
      // A marker of a run we already gave up on ends nothing.
      if (current) finish_run(status, {});
      return;
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  // Output between runs (a background job of an earlier run) belongs to no run.
  if (run_) run_->execution->log()->append(exec::events::stdout_text(line));
}

void BashSession::finish_run(int exit_code, const std::string& why) {
  std::optional<Run> r;
  {
    std::lock_guard<std::mutex> lock(mu_);
    r = std::move(run_);
    run_.reset();
  }
  if (!r) return;
  if (r->timer) reactor_->cancel(*r->timer);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - r->started).count();
  auto cpu = process::cpu_time_with_children_ms(pid_);
  nlohmann::json accounting = {{"duration_ms", ms}, {"exit_code", exit_code}};
  if (cpu) accounting["cpu_time_ms"] = *cpu >= r->cpu_before_ms ? *cpu - r->cpu_before_ms : 0;
  auto& log = *r->execution->log();
  if (exit_code == 0 && !r->timed_out && why.empty()) {
    log.close(exec::events::execution_complete(ms, accounting));
    return;
  }
  std::string trace = !why.empty()      ? why
                      : r->timed_out    ? "timeout after " + std::to_string(r->timeout.count()) + " ms"
                                        : "command exited with code " + std::to_string(exit_code);
  log.close(exec::events::error("CommandExecError", std::to_string(exit_code), {trace}, accounting));
}

void BashSession::on_exit() {
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == 0) return;
  reactor_->unwatch(pidfd_.get());
  pidfd_.reset();
  if (r > 0) reaper_->disown(pid_);
  // Take the last output, then end whatever run was going.
  if (out_fd_.valid()) on_output();
  for (const auto& line : lines_.finish()) handle_line(line);
  if (out_fd_.valid()) {
    reactor_->unwatch(out_fd_.get());
    out_fd_.reset();
  }
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  {
    std::lock_guard<std::mutex> lock(mu_);
    alive_ = false;
    in_fd_.reset();
  }
  // Whatever is left of the group (background jobs of earlier runs) goes with the shell.
  process::signal_group(pid_, SIGKILL);
  finish_run(code, "the session's shell exited with code " + std::to_string(code));
}

void BashSession::terminate() {
  if (!is_alive()) return;
  process::signal_group(pid_, SIGKILL);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (is_alive() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

}  // namespace execd::commands
