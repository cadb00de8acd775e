#include "invoke/zygote_run.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <utility>

#include "process/pipe_write.hpp"
#include "process/spawn.hpp"

namespace execd::invoke {

namespace {

constexpr int kReadsPerWakeup = 16;  // one chatty invocation cannot starve the others
constexpr std::chrono::milliseconds kCpuWatchInterval{250};
constexpr std::chrono::seconds kStdinWrite{10};

double timeval_ms(const timeval& tv) {
  return static_cast<double>(tv.tv_sec) * 1000.0 + tv.tv_usec / 1000.0;
}

}  // namespace

ZygoteRun::ZygoteRun(process::Reactor& reactor, Setup setup) : reactor_(reactor), setup_(std::move(setup)) {}

ZygoteRun::~ZygoteRun() = default;

core::Result<std::shared_ptr<ZygoteRun>> ZygoteRun::start(Zygote& zygote, process::Reactor& reactor, Setup setup) {
  auto run = std::make_shared<ZygoteRun>(reactor, std::move(setup));
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    const int e = errno;
    for (int fd : {in[0], in[1], out[0], out[1], err[0], err[1]}) {
      if (fd >= 0) ::close(fd);
    }
    return core::make_error(core::Errc::unavailable, std::string("cannot create pipes: ") + std::strerror(e));
  }
  core::UniqueFd in_r(in[0]), in_w(in[1]), out_w(out[1]), err_w(err[1]);
  run->stdout_fd_.reset(out[0]);
  run->stderr_fd_.reset(err[0]);
  for (int fd : {in_w.get(), run->stdout_fd_.get(), run->stderr_fd_.get()}) ::fcntl(fd, F_SETFL, O_NONBLOCK);

  auto& s = run->setup_;
  s.execution->log()->append(exec::events::init(s.execution->id()));
  // Watched before the fork: the child's exit may be reported before fork_child()
  // returns, and on_exit() drains the pipes on the reactor thread.
  std::weak_ptr<ZygoteRun> weak = run;
  const int out_fd = run->stdout_fd_.get();
  const int err_fd = run->stderr_fd_.get();
  reactor.watch(out_fd, [weak, out_fd](uint32_t) {
    if (auto r = weak.lock()) r->on_output(out_fd, false);
  });
  reactor.watch(err_fd, [weak, err_fd](uint32_t) {
    if (auto r = weak.lock()) r->on_output(err_fd, true);
  });
  run->started_ = std::chrono::steady_clock::now();

  ZygoteRequest request;
  request.stdin_fd = in_r.get();
  request.stdout_fd = out_w.get();
  request.stderr_fd = err_w.get();
  request.result_fd = s.result_fd;
  request.cwd = s.cwd;
  request.env = s.env;
  request.steps = s.steps;
  // stdin is written before the request goes out, as far as the pipe takes it: the child
  // then reads it at once instead of waiting for the zygote's answer to reach us first.
  size_t written = 0;
  while (written < s.stdin_data.size()) {
    const ssize_t n = ::write(in_w.get(), s.stdin_data.data() + written, s.stdin_data.size() - written);
    if (n > 0) {
      written += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      break;  // full (EAGAIN): the rest after the fork
    }
  }
  // Until it has exited, the run is held by the zygote's record of its child.
  auto pid = zygote.fork_child(request, [run](ZygoteExit x) { run->on_exit(x); });
  in_r.reset();
  out_w.reset();
  err_w.reset();
  if (!pid) {
    reactor.unwatch(out_fd);
    reactor.unwatch(err_fd);
    return pid.error();
  }
  {
    std::lock_guard lock(run->mu_);
    run->pid_ = *pid;
  }
  if (written < s.stdin_data.size()) {
    size_t more = 0;
    if (auto w = process::write_all(in_w.get(), std::string_view(s.stdin_data).substr(written), kStdinWrite, more); !w) {
      spdlog::warn("invocation {}: {}", s.execution->id(), w.error().message);
    }
  }
  in_w.reset();
  // The code, event and environment are the child's now: not kept for the run's life.
  std::string().swap(s.stdin_data);
  std::vector<std::string>().swap(s.env);
  if (s.timeout.count() > 0) {
    std::lock_guard lock(run->mu_);
    if (!run->finished_) {
      run->timeout_timer_ = reactor.after(s.timeout, [weak] {
        auto r = weak.lock();
        if (!r) return;
        {
          std::lock_guard lock(r->mu_);
          if (r->finished_) return;
          r->timed_out_ = true;
          if (std::exchange(r->escalating_, true)) return;  // an interrupt is ending it already
        }
        r->escalate(0);
      });
    }
  }
  if (s.guard && s.guard->has_cgroup() && s.guard->limits().get(isolation::Limit::cpu_time_s)) run->watch_cpu();
  return run;
}

core::Result<void> ZygoteRun::interrupt() {
  {
    std::lock_guard lock(mu_);
    if (finished_ || pid_ <= 0) {
      return core::make_error(core::Errc::conflict, "invocation " + setup_.execution->id() + " is not running");
    }
    if (escalating_) return {};  // already on its way down
    escalating_ = true;
  }
  escalate(0);
  return {};
}

bool ZygoteRun::signal_group(int sig) {
  pid_t pid = -1;
  {
    std::lock_guard lock(mu_);
    pid = pid_;
  }
  if (pid <= 0) return false;
  if (setup_.guard) return setup_.guard->signal(sig, pid);
  return process::signal_group(pid, sig);
}

void ZygoteRun::escalate(int step) {
  static constexpr int kSignals[] = {SIGINT, SIGTERM, SIGKILL};
  {
    std::lock_guard lock(mu_);
    if (finished_) return;
  }
  if (!signal_group(kSignals[step]) || step + 1 >= 3) return;
  std::weak_ptr<ZygoteRun> weak = weak_from_this();
  reactor_.after(setup_.kill_grace, [weak, step] {
    if (auto r = weak.lock()) r->escalate(step + 1);
  });
}

void ZygoteRun::watch_cpu() {
  std::weak_ptr<ZygoteRun> weak = weak_from_this();
  reactor_.after(kCpuWatchInterval, [weak] {
    auto r = weak.lock();
    if (!r) return;
    {
      std::lock_guard lock(r->mu_);
      if (r->finished_) return;
    }
    if (r->setup_.guard->cpu_exceeded()) {
      r->setup_.guard->record_kill(isolation::Limit::cpu_time_s);
      r->signal_group(SIGKILL);
      return;
    }
    r->watch_cpu();
  });
}

void ZygoteRun::on_output(int fd, bool is_stderr) {
  drain(fd, is_stderr);
}

bool ZygoteRun::drain(int fd, bool is_stderr) {
  auto& log = *setup_.execution->log();
  bool got = false;
  for (int i = 0; i < kReadsPerWakeup; ++i) {
    ssize_t n = 0;
    const std::string_view chunk = reactor_.read_into_scratch(fd, n);
    if (n > 0) {
      got = true;
      bool capped = false;
      const std::string_view kept =
          setup_.guard ? chunk.substr(0, setup_.guard->admit_output(chunk.size(), &capped)) : chunk;
      if (!kept.empty() && log.accepting()) {
        for (const auto& line : (is_stderr ? stderr_lines_ : stdout_lines_).feed(kept)) {
          log.append(is_stderr ? exec::events::stderr_text(line) : exec::events::stdout_text(line));
        }
      }
      if (capped) {
        const auto cap = setup_.guard->limits().get(isolation::Limit::output_bytes).value_or(0);
        log.append(exec::events::status("output truncated at " + std::to_string(cap) +
                                        " bytes (max_output_bytes): the invocation is killed"));
        setup_.guard->record_kill(isolation::Limit::output_bytes);
        signal_group(SIGKILL);
      }
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return got;
    reactor_.unwatch(fd);
    (is_stderr ? stderr_fd_ : stdout_fd_).reset();
    return got;
  }
  return got;
}

void ZygoteRun::on_exit(const ZygoteExit& x) {
  pid_t pid = x.pid;
  {
    std::lock_guard lock(mu_);
    if (finished_) return;
    if (pid <= 0) pid = pid_;
  }
  auto& guard = setup_.guard;
  // Which limit ended it is read before what is left is killed (that kill is ours).
  std::optional<isolation::LimitHit> hit;
  if (guard && !x.lost) hit = guard->limit_hit(x.wait_status);
  if (guard) guard->finish_processes();
  // Nothing of one invocation outlives it: a process it left behind in its group (a
  // thread dies with the process; a child does not) is killed now.
  if (pid > 0) process::signal_group(pid, SIGKILL);
  for (bool is_stderr : {false, true}) {
    auto& fd = is_stderr ? stderr_fd_ : stdout_fd_;
    for (int round = 0; round < 1024 && fd.valid(); ++round) {
      if (!drain(fd.get(), is_stderr)) break;
    }
    if (fd.valid()) {
      reactor_.unwatch(fd.get());
      fd.reset();
    }
  }
  auto& log = *setup_.execution->log();
  for (bool is_stderr : {false, true}) {
    for (const auto& line : (is_stderr ? stderr_lines_ : stdout_lines_).finish()) {
      log.append(is_stderr ? exec::events::stderr_text(line) : exec::events::stdout_text(line));
    }
  }
  bool timed_out = false;
  {
    std::lock_guard lock(mu_);
    finished_ = true;
    timed_out = timed_out_;
    if (timeout_timer_) reactor_.cancel(*timeout_timer_);
  }

  const int64_t ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started_).count();
  nlohmann::json accounting = {
      {"duration_ms", ms},
      {"cpu_time_ms", static_cast<int64_t>(timeval_ms(x.usage.ru_utime) + timeval_ms(x.usage.ru_stime))},
      {"peak_memory_mb", static_cast<double>(x.usage.ru_maxrss) / 1024.0},
      {"io_read_bytes", static_cast<int64_t>(x.usage.ru_inblock) * 512},
      {"io_write_bytes", static_cast<int64_t>(x.usage.ru_oublock) * 512},
  };
  int exit_code = -1;
  std::string error;
  if (x.lost) {
    error = "the zygote that forked this invocation died while it ran";
  } else if (WIFEXITED(x.wait_status)) {
    exit_code = WEXITSTATUS(x.wait_status);
    if (exit_code != 0) error = "exit status " + std::to_string(exit_code);
  } else if (WIFSIGNALED(x.wait_status)) {
    const int sig = WTERMSIG(x.wait_status);
    error = std::string("signal: ") + (sigdescr_np(sig) != nullptr ? sigdescr_np(sig) : std::to_string(sig).c_str());
    for (auto& c : error) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  if (timed_out) {
    error =
        "timeout after " + std::to_string(setup_.timeout.count()) + " ms (" + (error.empty() ? "exited" : error) + ")";
  }
  accounting["exit_code"] = exit_code;
  if (guard) {
    guard->add_usage(accounting);
    guard->finish();
  }
  if (hit) {
    accounting["killed"] = isolation::ExecutionGuard::killed_json(*hit);
    error = hit->message + (error.empty() ? std::string() : " (" + error + ")");
  }
  setup_.on_finish(
      commands::CommandOutcome{exit_code, error, timed_out, hit.has_value(), std::move(accounting), setup_.execution});
}

}  // namespace execd::invoke
