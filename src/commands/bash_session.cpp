#include "commands/bash_session.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <sstream>
#include <thread>

#include <spdlog/spdlog.h>

#include "core/fd_io.hpp"
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
constexpr std::chrono::seconds kSandboxStart{10};

// The innermost pid of /proc/<pid>/status's NSpid line (the pid inside its namespace).
std::optional<long> inner_pid(pid_t pid) {
  const std::string status = core::read_file("/proc/" + std::to_string(pid) + "/status");
  const auto at = status.find("\nNSpid:");
  if (at == std::string::npos) return std::nullopt;
  const auto end = status.find('\n', at + 1);
  std::istringstream fields(status.substr(at + 7, end - at - 7));
  long last = 0;
  int count = 0;
  for (long v = 0; fields >> v; ++count) last = v;
  if (count < 2) return std::nullopt;  // not in a namespace of its own
  return last;
}

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
  if (ExecutionGuard::needed(s->options_.limits)) {
    if (!s->options_.isolator) {
      return core::make_error(core::Errc::invalid_argument, "isolation and limits are not available in this daemon");
    }
    auto guard = ExecutionGuard::make(*s->options_.isolator, s->options_.limits, so, "s-" + s->id_);
    if (!guard) return guard.error();
    s->guard_ = std::move(guard).value();
  }
  auto child = s->reaper_->spawn(so);
  if (!child) return child.error();
  s->pid_ = child->pid;
  s->shell_pid_ = s->pid_;
  s->shell_pgid_ = s->pid_;
  if (s->in_namespace()) {
    if (auto found = s->find_sandboxed_shell(); !found) {
      process::signal_group(s->pid_, SIGKILL);
      ::waitpid(s->pid_, nullptr, 0);
      s->reaper_->disown(s->pid_);
      return found.error();
    }
  }
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

core::Result<void> BashSession::find_sandboxed_shell() {
  // bwrap's init is pid 1 in the sandbox and forks the shell as pid 2, after setsid (so
  // the shell's group is init's). Interrupts go to that group (init ignores them, being
  // a namespace's init without handlers); signals meant for a run's processes spare both.
  const auto deadline = std::chrono::steady_clock::now() + kSandboxStart;
  while (std::chrono::steady_clock::now() < deadline) {
    for (const pid_t p : guard_->members()) {
      if (inner_pid(p) == 2) {
        const pid_t pgid = ::getpgid(p);
        if (pgid <= 0) continue;
        shell_pid_ = p;
        shell_pgid_ = pgid;
        return {};
      }
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG | WNOWAIT) == pid_) break;  // bwrap gave up
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return core::make_error(core::Errc::unavailable, "the session's sandbox did not start its shell");
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
  auto cpu = process::cpu_time_with_children_ms(shell_pid_);
  r.cpu_before_ms = cpu ? *cpu : 0;
  if (guard_) r.baseline = guard_->usage();
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
  for (pid_t p : process::group_members(shell_pgid_)) {
    if (p != shell_pid_ && p != shell_pgid_) ::kill(p, sig);
  }
}

void BashSession::escalate(uint64_t seq, int step) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!run_ || run_->seq != seq || !alive_) return;
  }
  switch (step) {
    case 0: process::signal_group(shell_pgid_, SIGINT); break;  // the shell traps it and ends the run
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
  const auto cap = guard_ ? guard_->limits().get(isolation::Limit::output_bytes) : std::nullopt;
  uint64_t capped_seq = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Output between runs (a background job of an earlier run) belongs to no run.
    if (!run_) return;
    if (cap) {
      // Past the run's max_output_bytes lines are dropped (still read, so nothing
      // blocks on the pipe) and the run is interrupted.
      if (run_->output_capped) return;
      run_->output_bytes += line.size() + 1;
      if (run_->output_bytes > *cap) {
        run_->output_capped = true;
        capped_seq = run_->seq;
        run_->execution->log()->append(exec::events::status(
            "output truncated at " + std::to_string(*cap) + " bytes (max_output_bytes): the run is interrupted"));
      }
    }
    if (capped_seq == 0) run_->execution->log()->append(exec::events::stdout_text(line));
  }
  if (capped_seq != 0) escalate(capped_seq, 0);
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
  auto cpu = process::cpu_time_with_children_ms(shell_pid_);
  nlohmann::json accounting = {{"duration_ms", ms}, {"exit_code", exit_code}};
  if (cpu) accounting["cpu_time_ms"] = *cpu >= r->cpu_before_ms ? *cpu - r->cpu_before_ms : 0;
  std::optional<isolation::LimitHit> hit;
  if (guard_) {
    if (r->output_capped) {
      const uint64_t cap = guard_->limits().get(isolation::Limit::output_bytes).value_or(0);
      hit = isolation::LimitHit{isolation::Limit::output_bytes, cap,
                                "killed: output limit of " + std::to_string(cap) +
                                    " bytes reached (max_output_bytes); later output was dropped"};
    } else {
      hit = guard_->limit_hit(exit_code >= 0 ? W_EXITCODE(exit_code & 0xff, 0) : 0, r->baseline);
    }
    guard_->add_usage(accounting, r->baseline);
    if (hit) accounting["killed"] = ExecutionGuard::killed_json(*hit);
  }
  auto& log = *r->execution->log();
  if (exit_code == 0 && !r->timed_out && why.empty() && !hit) {
    log.close(exec::events::execution_complete(ms, accounting));
    return;
  }
  std::string trace = !why.empty()      ? why
                      : r->timed_out    ? "timeout after " + std::to_string(r->timeout.count()) + " ms"
                                        : "command exited with code " + std::to_string(exit_code);
  if (hit) trace = hit->message + " (" + trace + ")";
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
  // Whatever is left of the group (background jobs of earlier runs) goes with the shell.
  process::signal_group(pid_, SIGKILL);
  finish_run(code, "the session's shell exited with code " + std::to_string(code));
  // Then everything else the session started (setsid escapees too), its cgroup and its
  // workspace, before the session counts as ended.
  if (guard_) guard_->finish();
  std::lock_guard<std::mutex> lock(mu_);
  alive_ = false;
  in_fd_.reset();
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
