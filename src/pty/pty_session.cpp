#include "pty/pty_session.hpp"

#include <fcntl.h>
#include <pty.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <thread>

#include "core/clock.hpp"
#include "process/pipe_write.hpp"
#include "process/proc_table.hpp"
#include "process/spawn.hpp"

namespace execd::pty {
namespace {

constexpr int kReadsPerWakeup = 16;
constexpr std::chrono::seconds kStdinTimeout{5};
constexpr uint16_t kMaxDimension = 1000;

// In the child, after spawn's setsid and stdio: the terminal becomes the controlling tty
// and stdin, stdout and stderr. Async-signal-safe, no allocation (the child shares our
// memory until exec).
int adopt_terminal(const void* arg, const char** failed_step) noexcept {
  const int fd = *static_cast<const int*>(arg);
  if (::ioctl(fd, TIOCSCTTY, 0) != 0) {
    *failed_step = "making the terminal the controlling tty (TIOCSCTTY)";
    return errno;
  }
  for (int target = 0; target < 3; ++target) {
    if (::dup2(fd, target) < 0) {
      *failed_step = "connecting stdio to the terminal";
      return errno;
    }
  }
  return 0;
}

// The child's steps: the terminal (PTY mode), then the isolation's (cgroup join, rlimits,
// no_new_privs), both async-signal-safe.
struct ChildSetup {
  int terminal_fd = -1;
  int (*isolation)(const void*, const char**) noexcept = nullptr;
  const void* isolation_arg = nullptr;
};

int child_setup(const void* arg, const char** failed_step) noexcept {
  const auto* setup = static_cast<const ChildSetup*>(arg);
  if (setup->terminal_fd >= 0) {
    if (const int e = adopt_terminal(&setup->terminal_fd, failed_step); e != 0) return e;
  }
  return setup->isolation != nullptr ? setup->isolation(setup->isolation_arg, failed_step) : 0;
}

bool set_flags(int fd, int fd_flags, int fl_flags) {
  const int fdf = ::fcntl(fd, F_GETFD);
  const int flf = ::fcntl(fd, F_GETFL);
  return fdf >= 0 && flf >= 0 && ::fcntl(fd, F_SETFD, fdf | fd_flags) == 0 && ::fcntl(fd, F_SETFL, flf | fl_flags) == 0;
}

}  // namespace

core::Result<int> signal_by_name(const std::string& name) {
  std::string n;
  for (const char c : name) n += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (n.rfind("SIG", 0) == 0) n.erase(0, 3);
  static const std::pair<const char*, int> kNames[] = {
      {"HUP", SIGHUP},     {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"KILL", SIGKILL}, {"TERM", SIGTERM},
      {"USR1", SIGUSR1},   {"USR2", SIGUSR2}, {"STOP", SIGSTOP}, {"TSTP", SIGTSTP}, {"CONT", SIGCONT},
      {"WINCH", SIGWINCH}, {"ALRM", SIGALRM}, {"PIPE", SIGPIPE}, {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU}};
  for (const auto& [text, sig] : kNames) {
    if (n == text) return sig;
  }
  if (!n.empty() && n.size() <= 2 && std::all_of(n.begin(), n.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    const int sig = std::stoi(n);
    if (sig >= 1 && sig <= 31) return sig;
  }
  return core::make_error(core::Errc::invalid_argument, "unknown signal '" + name + "' (use a name like SIGINT)");
}

PtySession::PtySession(std::string id, PtySpec spec, Deps deps)
    : id_(std::move(id)),
      spec_(std::move(spec)),
      deps_(std::move(deps)),
      output_(deps_.scrollback),
      created_at_ms_(core::unix_ms()),
      cols_(spec_.cols),
      rows_(spec_.rows),
      idle_since_(std::chrono::steady_clock::now()) {}

PtySession::~PtySession() {
  // No callback can reach us any more (they hold a weak pointer), so nothing else will
  // reap the shell: stop watching, kill the session and reap it here, bounded.
  stop_watching();
  if (!running_ || pid_ <= 0) return;
  kill_session(SIGKILL);
  const auto deadline = std::chrono::steady_clock::now() + deps_.kill_wait;
  while (true) {
    const pid_t r = ::waitpid(pid_, nullptr, WNOHANG);
    if (r == pid_ || (r < 0 && errno != EINTR)) {
      if (r == pid_) deps_.reaper->disown(pid_);
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      spdlog::warn("pty {}: shell pid {} not reaped within the kill wait", id_, pid_);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

core::Result<void> PtySession::start(PtyMode mode) {
  std::lock_guard<std::mutex> lock(mu_);
  if (terminated_) return core::make_error(core::Errc::conflict, "pty session " + id_ + " was deleted");
  if (started_) return {};

  process::SpawnOptions so;
  so.argv = {"bash", "--noprofile", "--norc"};
  if (mode == PtyMode::pty) so.argv.emplace_back("-i");
  std::map<std::string, std::string> env;
  for (const auto& kv : deps_.base_env) {
    const auto eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  env["TERM"] = mode == PtyMode::pty ? "xterm-256color" : "dumb";
  // The host's home directory is not in a namespace-level sandbox: the Isolator makes the
  // workspace HOME unless the request names one.
  if (spec_.limits.level == isolation::Level::namespace_) env.erase("HOME");
  for (const auto& [k, v] : spec_.envs) env[k] = v;
  for (const auto& [k, v] : env) so.env.push_back(k + "=" + v);
  so.cwd = spec_.cwd;

  // The isolation first: it rewrites argv, environment and cwd, and brings its own child
  // steps, which run after the terminal's.
  std::unique_ptr<isolation::ExecutionGuard> guard;
  if (isolation::ExecutionGuard::needed(spec_.limits)) {
    if (!deps_.isolator) {
      return core::make_error(core::Errc::invalid_argument, "isolation and limits are not available in this daemon");
    }
    // At namespace level in PTY mode bwrap must not start a new session: the terminal made
    // the controlling tty below would be lost, and with it job control. --new-session is
    // bubblewrap's guard against TIOCSTI (CVE-2017-5226: pushing input into the caller's
    // terminal, which the caller's shell reads once the sandbox is gone). This host's
    // kernel still allows TIOCSTI on one's own controlling tty (dev.tty.legacy_tiocsti=1;
    // Linux 6.2+ can require CAP_SYS_ADMIN instead) and on any other tty only with
    // CAP_SYS_ADMIN, which the sandbox has dropped. Here the controlling tty is a pty made
    // for this session: what is pushed into it is read by the sandbox's own shell, and the
    // daemon only reads the master's output (where such bytes appear as the echo any
    // program in the sandbox could write anyway). So nothing outside is reached.
    auto made = isolation::ExecutionGuard::make(*deps_.isolator, spec_.limits, so, "p-" + id_, {}, false,
                                                /*own_terminal=*/mode == PtyMode::pty);
    if (!made) return made.error();
    guard = std::move(made).value();
  }
  ChildSetup setup;
  setup.isolation = so.child_setup;
  setup.isolation_arg = so.child_setup_arg;
  so.child_setup = nullptr;
  so.child_setup_arg = nullptr;

  core::UniqueFd master;
  core::UniqueFd slave;
  if (mode == PtyMode::pty) {
    int m = -1;
    int s = -1;
    winsize ws{};
    ws.ws_col = cols_;
    ws.ws_row = rows_;
    if (::openpty(&m, &s, nullptr, nullptr, &ws) != 0) {
      return core::make_error(core::Errc::unavailable, std::string("openpty failed: ") + std::strerror(errno));
    }
    master.reset(m);
    slave.reset(s);
    if (!set_flags(m, FD_CLOEXEC, O_NONBLOCK) || !set_flags(s, FD_CLOEXEC, 0)) {
      return core::make_error(core::Errc::unavailable,
                              std::string("setting up the terminal failed: ") + std::strerror(errno));
    }
    setup.terminal_fd = s;
    so.merge_stderr = true;
  } else {
    so.stdin_pipe = true;
  }
  if (setup.terminal_fd >= 0 || setup.isolation != nullptr) {
    so.child_setup = &child_setup;
    so.child_setup_arg = &setup;
  }

  auto child = deps_.reaper->spawn(so);
  if (!child) return core::make_error(core::Errc::unavailable, "starting the shell failed: " + child.error().message);
  slave.reset();  // the shell has its own copies; the master sees EIO once they are all closed
  guard_ = std::move(guard);
  pid_ = child->pid;
  pidfd_ = std::move(child->pidfd);
  if (mode == PtyMode::pty) {
    in_fd_.reset(::fcntl(master.get(), F_DUPFD_CLOEXEC, 3));
    out_fd_ = std::move(master);
  } else {
    in_fd_ = std::move(child->stdin_fd);
    out_fd_ = std::move(child->stdout_fd);
    err_fd_ = std::move(child->stderr_fd);
  }
  started_ = true;
  running_ = true;
  mode_ = mode;
  spdlog::debug("pty {}: started bash pid {} in {} mode", id_, pid_, mode == PtyMode::pty ? "pty" : "pipe");

  std::weak_ptr<PtySession> weak = weak_from_this();
  const int out = out_fd_.get();
  deps_.reactor->watch(out, [weak, out](uint32_t) {
    if (auto s = weak.lock()) s->on_readable(out, kStdout);
  });
  if (err_fd_.valid()) {
    const int err = err_fd_.get();
    deps_.reactor->watch(err, [weak, err](uint32_t) {
      if (auto s = weak.lock()) s->on_readable(err, kStderr);
    });
  }
  deps_.reactor->watch(pidfd_.get(), [weak](uint32_t) {
    if (auto s = weak.lock()) s->on_exit();
  });
  return {};
}

void PtySession::on_readable(int fd, uint8_t channel) {
  for (int i = 0; i < kReadsPerWakeup; ++i) {
    ssize_t n = 0;
    const std::string_view got = deps_.reactor->read_into_scratch(fd, n);
    if (n > 0) {
      output_.append(channel, got);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    // End of stream, or EIO: every holder of the terminal's other side has closed it.
    deps_.reactor->unwatch(fd);
    return;
  }
}

void PtySession::drain(int fd, uint8_t channel) {
  // Bounded: a descendant that keeps writing to an inherited pipe cannot hold us here.
  for (int i = 0; i < 64; ++i) {
    ssize_t n = 0;
    const std::string_view got = deps_.reactor->read_into_scratch(fd, n);
    if (n <= 0) return;
    output_.append(channel, got);
  }
}

void PtySession::on_exit() {
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == 0) return;
  deps_.reactor->unwatch(pidfd_.get());
  if (r > 0) deps_.reaper->disown(pid_);
  // What is left of the session (background jobs, a pipeline the shell left behind) goes
  // with the shell; then the last output is taken before the scrollback closes.
  kill_session(SIGKILL);
  // Whatever is left in the cgroup is killed and reaped, the cgroup removed.
  if (guard_) guard_->finish();
  if (out_fd_.valid()) drain(out_fd_.get(), kStdout);
  if (err_fd_.valid()) drain(err_fd_.get(), kStderr);
  stop_watching();
  const int code = r < 0 ? -1 : WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  {
    std::lock_guard<std::mutex> lock(mu_);
    running_ = false;
    exit_code_ = code;
  }
  output_.close();
  exited_cv_.notify_all();
  spdlog::debug("pty {}: bash exited with {}", id_, code);
}

void PtySession::stop_watching() {
  // Reactor thread (on_exit) or the destructor, once nothing else reads these.
  if (out_fd_.valid()) {
    deps_.reactor->unwatch(out_fd_.get());
    out_fd_.reset();
  }
  if (err_fd_.valid()) {
    deps_.reactor->unwatch(err_fd_.get());
    err_fd_.reset();
  }
  if (pidfd_.valid()) {
    deps_.reactor->unwatch(pidfd_.get());
    pidfd_.reset();
  }
}

void PtySession::kill_session(int sig) {
  if (pid_ <= 0) return;
  process::signal_group(pid_, sig);
  // Isolated: the cgroup finds those that left the session too (setsid).
  if (guard_) guard_->signal(sig, pid_);
  // Job control puts each job in a group of its own, inside the shell's session.
  for (const auto& p : process::list_identities()) {
    if (p.sid == pid_ && p.pid != pid_) ::kill(p.pid, sig);
  }
}

PtyStatus PtySession::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  PtyStatus s;
  s.id = id_;
  s.started = started_;
  s.running = running_;
  s.exit_code = exit_code_;
  s.mode = mode_;
  s.pid = started_ ? pid_ : 0;
  s.output_offset = output_.end();
  s.output_begin = output_.begin();
  s.cols = cols_;
  s.rows = rows_;
  s.attached = holder_ != 0;
  s.cwd = spec_.cwd;
  s.created_at_ms = created_at_ms_;
  return s;
}

PtyMode PtySession::mode() const {
  std::lock_guard<std::mutex> lock(mu_);
  return mode_;
}

std::optional<int> PtySession::exit_code() const {
  std::lock_guard<std::mutex> lock(mu_);
  return exit_code_;
}

core::Result<uint64_t> PtySession::attach(bool takeover, std::function<void()> evict) {
  std::function<void()> old;
  uint64_t token = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (terminated_) return core::make_error(core::Errc::not_found, "pty session " + id_ + " was deleted");
    if (holder_ != 0 && !takeover) {
      return core::make_error(
          core::Errc::conflict,
          "pty session " + id_ + " already has a WebSocket attached (add takeover=1 to take it over)");
    }
    old = std::move(evict_);
    token = next_token_++;
    holder_ = token;
    evict_ = std::move(evict);
  }
  if (old) old();
  return token;
}

void PtySession::detach(uint64_t token) {
  std::lock_guard<std::mutex> lock(mu_);
  if (holder_ != token) return;
  holder_ = 0;
  evict_ = nullptr;
  idle_since_ = std::chrono::steady_clock::now();
}

std::optional<std::chrono::steady_clock::time_point> PtySession::idle_since() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (holder_ != 0) return std::nullopt;
  return idle_since_;
}

core::Result<void> PtySession::write_stdin(std::string_view bytes) {
  int fd = -1;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!running_) return core::make_error(core::Errc::conflict, "pty session " + id_ + "'s shell is not running");
    fd = in_fd_.get();
  }
  std::lock_guard<std::mutex> lock(write_mu_);
  size_t written = 0;
  return process::write_all(fd, bytes, kStdinTimeout, written);
}

core::Result<void> PtySession::resize(uint16_t cols, uint16_t rows) {
  if (cols == 0 || rows == 0 || cols > kMaxDimension || rows > kMaxDimension) {
    return core::make_error(core::Errc::invalid_argument, "cols and rows must be 1.." + std::to_string(kMaxDimension));
  }
  std::lock_guard<std::mutex> lock(mu_);
  cols_ = cols;
  rows_ = rows;
  if (!running_ || mode_ != PtyMode::pty) return {};
  winsize ws{};
  ws.ws_col = cols;
  ws.ws_row = rows;
  if (::ioctl(in_fd_.get(), TIOCSWINSZ, &ws) != 0) {
    return core::make_error(core::Errc::internal, std::string("TIOCSWINSZ failed: ") + std::strerror(errno));
  }
  return {};
}

core::Result<void> PtySession::signal(const std::string& name) {
  auto sig = signal_by_name(name);
  if (!sig) return sig.error();
  std::lock_guard<std::mutex> lock(mu_);
  if (!running_) return core::make_error(core::Errc::conflict, "pty session " + id_ + "'s shell is not running");
  // At namespace level pid_ is bwrap, outside the sandbox: its group (bwrap and the
  // sandbox's init) is never signalled, or a SIGINT would take the whole sandbox down.
  // (It is the terminal's foreground group only until bash takes the terminal, a few ms
  // after start: a Ctrl-C byte typed in that window ends the sandbox as it would a shell.)
  const bool in_sandbox = guard_ && guard_->in_namespace();
  if (mode_ == PtyMode::pty) {
    const pid_t fg = ::tcgetpgrp(in_fd_.get());
    if (fg > 0 && !(in_sandbox && fg == pid_) && ::kill(-fg, *sig) == 0) return {};
  }
  if (in_sandbox) {
    // The sandbox's processes (its init ignores all but SIGKILL), as a bash session does.
    if (!guard_->signal(*sig, pid_)) {
      return core::make_error(core::Errc::conflict, "pty session " + id_ + "'s shell is gone");
    }
    return {};
  }
  if (!process::signal_group(pid_, *sig)) {
    return core::make_error(core::Errc::conflict, "pty session " + id_ + "'s shell is gone");
  }
  return {};
}

void PtySession::terminate() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    terminated_ = true;
    // The holder is not evicted: it reads the closed output to its end, then the exit.
    evict_ = nullptr;
    if (running_) {
      lock.unlock();
      kill_session(SIGKILL);
      lock.lock();
      exited_cv_.wait_for(lock, deps_.kill_wait, [&] { return !running_; });
      if (running_) spdlog::warn("pty {}: shell pid {} not reaped within the kill wait", id_, pid_);
    }
  }
  output_.close();
}

}  // namespace execd::pty
