#include "invoke/zygote.hpp"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "core/json_parse.hpp"
#include "core/unique_fd.hpp"
#include "invoke/zygote_program.hpp"
#include "process/spawn.hpp"

namespace execd::invoke {

namespace {

constexpr const char* kZygotePath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr std::chrono::seconds kRestartEvery{1};
constexpr size_t kMaxPacket = 60000;  // the zygote reads up to 64 KiB per request
constexpr size_t kMaxFds = 32;        // and at most this many descriptors

timeval micros(int64_t us) {
  return timeval{static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
}

}  // namespace

struct Zygote::State : std::enable_shared_from_this<State> {
  struct Pending {
    pid_t pid = -1;
    bool answered = false;
    bool abandoned = false;  // the requester gave up waiting: kill what it forked
    std::string error;
    std::function<void(ZygoteExit)> on_exit;
    // CPU the spare had used before it took the request (its warm-up): not the request's.
    int64_t utime_before_us = 0, stime_before_us = 0;
  };
  enum class Phase { down, starting, ready };

  std::shared_ptr<process::Reactor> reactor;
  std::shared_ptr<process::ChildReaper> reaper;
  Options options;

  std::mutex mu;  // everything below but `ctl`'s closing
  std::condition_variable cv;
  Phase phase = Phase::down;
  uint64_t generation = 0;  // one per zygote process: callbacks of a dead one are ignored
  pid_t pid = -1;
  core::UniqueFd pidfd;
  core::UniqueFd ctl;
  core::UniqueFd work;  // requests go here, straight to the zygote's spare child
  std::chrono::steady_clock::time_point last_start{};
  std::unordered_map<uint64_t, std::shared_ptr<Pending>> pending;
  std::unordered_map<pid_t, uint64_t> by_pid;  // started children: their exits name only the pid
  uint64_t next_id = 1;
  // Held while sending, and to close sockets taken out of `ctl` and `work`: a sender's
  // descriptor is never closed (and reused) under it.
  std::mutex send_mu;

  core::Result<void> start(std::unique_lock<std::mutex>& lock);
  core::Result<void> ready(std::unique_lock<std::mutex>& lock);
  void on_ctl(uint64_t gen);
  void on_pidfd(uint64_t gen);
  void handle(uint64_t gen, const nlohmann::json& msg);
  /// The zygote `gen` is gone (or being stopped): every child it had is lost.
  void down(uint64_t gen, const std::string& why, bool from_reactor);
};

core::Result<void> Zygote::State::start(std::unique_lock<std::mutex>& lock) {
  int sv[2] = {-1, -1};
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    return core::make_error(core::Errc::unavailable, std::string("socketpair: ") + std::strerror(errno));
  }
  core::UniqueFd ours(sv[0]);
  core::UniqueFd theirs(sv[1]);
  int wv[2] = {-1, -1};
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, wv) != 0) {
    return core::make_error(core::Errc::unavailable, std::string("socketpair: ") + std::strerror(errno));
  }
  core::UniqueFd work_ours(wv[0]);
  core::UniqueFd work_theirs(wv[1]);
  // A zygote that stops reading must not hold a request thread for long.
  const timeval send_timeout{2, 0};
  ::setsockopt(ours.get(), SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof send_timeout);
  ::setsockopt(work_ours.get(), SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof send_timeout);

  process::SpawnOptions so;
  so.argv = {process::find_in_path(options.python), "-I", "-c", zygote_program(), "execd-zygote"};
  so.env = {kZygotePath};
  so.cwd = "/";
  so.output_file = "/dev/null";
  so.pass_fds = {theirs.get(), work_theirs.get()};  // 3 and 4
  last_start = std::chrono::steady_clock::now();
  phase = Phase::starting;
  const uint64_t gen = ++generation;
  lock.unlock();
  auto child = reaper->spawn(so);
  lock.lock();
  if (!child) {
    if (generation == gen) phase = Phase::down;
    cv.notify_all();
    return core::make_error(core::Errc::unavailable, "cannot start the zygote: " + child.error().message);
  }
  if (generation != gen) {  // stopped meanwhile
    ::kill(child->pid, SIGKILL);
    ::waitpid(child->pid, nullptr, 0);
    reaper->disown(child->pid);
    return core::make_error(core::Errc::unavailable, "the zygote was stopped while it started");
  }
  pid = child->pid;
  pidfd = std::move(child->pidfd);
  ctl = std::move(ours);
  work = std::move(work_ours);
  auto self = shared_from_this();
  reactor->watch(ctl.get(), [self, gen](uint32_t) { self->on_ctl(gen); });
  reactor->watch(pidfd.get(), [self, gen](uint32_t) { self->on_pidfd(gen); });
  spdlog::info("invoke: zygote {} started", pid);
  return {};
}

void Zygote::State::on_ctl(uint64_t gen) {
  int fd = -1;
  {
    std::lock_guard lock(mu);
    if (gen != generation || !ctl.valid()) return;
    fd = ctl.get();
  }
  // Only this (reactor) thread closes a live generation's socket, in down().
  std::string buf(1 << 16, '\0');
  for (int i = 0; i < 64; ++i) {
    const ssize_t n = ::recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
      down(gen, n == 0 ? "it closed its socket" : std::string("recv: ") + std::strerror(errno), true);
      return;
    }
    auto msg = core::parse_json(std::string_view(buf.data(), static_cast<size_t>(n)));
    if (!msg || !msg->is_object()) {
      spdlog::warn("invoke: the zygote sent a packet that does not parse");
      continue;
    }
    handle(gen, *msg);
  }
}

void Zygote::State::handle(uint64_t gen, const nlohmann::json& msg) {
  auto number = [&](const char* key) -> int64_t {
    auto it = msg.find(key);
    return it != msg.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
  };
  if (msg.contains("ready")) {
    std::lock_guard lock(mu);
    if (gen == generation && phase == Phase::starting) phase = Phase::ready;
    cv.notify_all();
    return;
  }
  if (msg.contains("log")) {
    spdlog::warn("invoke: zygote: {}", msg["log"].is_string() ? msg["log"].get<std::string>() : msg["log"].dump());
    return;
  }
  // {"started": id, "pid"} comes from the child that took request `id`; {"exited": pid}
  // from the zygote once it reaped it (after the child's own message, on this socket).
  std::shared_ptr<Pending> p;
  {
    std::lock_guard lock(mu);
    if (msg.contains("started")) {
      auto it = pending.find(static_cast<uint64_t>(number("started")));
      if (it == pending.end()) return;
      p = it->second;
      p->pid = static_cast<pid_t>(number("pid"));
      p->utime_before_us = number("utime_us");
      p->stime_before_us = number("stime_us");
      p->answered = true;
      if (p->pid > 0) by_pid[p->pid] = it->first;
      // Nobody waits for this child any more: it must not run on its own (it may not have
      // made its own group yet: the process too; the zygote has not reaped it, so the pid
      // is still this child's).
      if (p->abandoned && p->pid > 0) {
        ::kill(-p->pid, SIGKILL);
        ::kill(p->pid, SIGKILL);
      }
      cv.notify_all();
      return;
    }
    if (msg.contains("failed")) {
      auto it = pending.find(static_cast<uint64_t>(number("failed")));
      if (it == pending.end()) return;
      it->second->answered = true;
      it->second->error = msg.value("message", std::string("the zygote could not fork"));
      pending.erase(it);
      cv.notify_all();
      return;
    }
    auto child = by_pid.find(static_cast<pid_t>(number("exited")));
    if (child == by_pid.end()) return;  // a spare that never took a request
    auto it = pending.find(child->second);
    by_pid.erase(child);
    if (it == pending.end()) return;
    p = it->second;
    pending.erase(it);
  }
  if (p->abandoned || !p->on_exit) return;
  ZygoteExit x;
  x.pid = static_cast<pid_t>(number("exited"));
  x.wait_status = static_cast<int>(number("status"));
  x.usage.ru_utime = micros(std::max<int64_t>(0, number("utime_us") - p->utime_before_us));
  x.usage.ru_stime = micros(std::max<int64_t>(0, number("stime_us") - p->stime_before_us));
  x.usage.ru_maxrss = number("maxrss_kb");
  x.usage.ru_inblock = number("inblock");
  x.usage.ru_oublock = number("oublock");
  p->on_exit(x);
}

void Zygote::State::on_pidfd(uint64_t gen) {
  {
    std::lock_guard lock(mu);
    if (gen != generation || pid <= 0) return;
    int status = 0;
    // Under the lock: stop() bumps the generation first, so it and this never both reap.
    if (::waitpid(pid, &status, WNOHANG) == 0) return;
    reactor->unwatch(pidfd.get());
    pidfd.reset();
    reaper->disown(pid);
    spdlog::warn("invoke: zygote {} ended ({})", pid,
                 WIFSIGNALED(status) ? "signal " + std::to_string(WTERMSIG(status))
                                     : "exit " + std::to_string(WEXITSTATUS(status)));
    pid = -1;
  }
  // What it sent before it died (a child it forked, a child it reaped) is still queued on
  // the socket, and the same wake-up may have run this callback first: read it before
  // its pending requests are failed.
  on_ctl(gen);
  down(gen, "it exited", true);
}

void Zygote::State::down(uint64_t gen, const std::string& why, bool from_reactor) {
  core::UniqueFd closing, closing_work;
  std::unordered_map<uint64_t, std::shared_ptr<Pending>> lost;
  {
    std::lock_guard lock(mu);
    if (gen != generation) return;
    if (phase != Phase::down) spdlog::warn("invoke: the zygote is down: {}", why);
    phase = Phase::down;
    if (ctl.valid()) reactor->unwatch(ctl.get());
    closing = std::move(ctl);
    closing_work = std::move(work);
    by_pid.clear();
    lost.swap(pending);
    for (auto& [id, p] : lost) {
      if (!p->answered) {
        p->answered = true;
        p->error = "the zygote died before it answered";
      }
    }
    cv.notify_all();
  }
  {
    std::lock_guard send_lock(send_mu);
    closing.reset();
    closing_work.reset();
  }
  for (auto& [id, p] : lost) {
    if (p->pid <= 0 || !p->on_exit || p->abandoned) continue;
    ::kill(-p->pid, SIGKILL);  // they die with the zygote anyway (PR_SET_PDEATHSIG)
    ZygoteExit x;
    x.pid = p->pid;
    x.wait_status = SIGKILL;  // as a child killed by SIGKILL reads
    x.lost = true;
    if (from_reactor) {
      p->on_exit(x);
    } else {
      reactor->after(std::chrono::milliseconds(0), [p, x] { p->on_exit(x); });
    }
  }
}

Zygote::Zygote(std::shared_ptr<process::Reactor> reactor, std::shared_ptr<process::ChildReaper> reaper, Options options)
    : state_(std::make_shared<State>()) {
  state_->reactor = std::move(reactor);
  state_->reaper = std::move(reaper);
  state_->options = std::move(options);
}

Zygote::~Zygote() {
  stop();
}

pid_t Zygote::pid() const {
  std::lock_guard lock(state_->mu);
  return state_->phase == State::Phase::ready ? state_->pid : -1;
}

void Zygote::stop() {
  auto& s = *state_;
  pid_t pid = -1;
  core::UniqueFd pidfd;
  uint64_t gen = 0;
  {
    std::lock_guard lock(s.mu);
    gen = s.generation;
    pid = std::exchange(s.pid, -1);
    if (s.pidfd.valid()) s.reactor->unwatch(s.pidfd.get());
    pidfd = std::move(s.pidfd);
  }
  s.down(gen, "stopped", false);
  {
    std::lock_guard lock(s.mu);
    ++s.generation;  // late callbacks of this one are ignored
  }
  if (pid > 0) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    s.reaper->disown(pid);
  }
}

core::Result<void> Zygote::State::ready(std::unique_lock<std::mutex>& lock) {
  if (phase == Phase::down) {
    if (std::chrono::steady_clock::now() - last_start < kRestartEvery && generation > 0) {
      return core::make_error(core::Errc::unavailable, "the zygote died less than a second after it started");
    }
    if (auto r = start(lock); !r) return r.error();
  }
  if (!cv.wait_for(lock, options.ready_wait, [&] { return phase != Phase::starting; }) || phase != Phase::ready) {
    return core::make_error(core::Errc::unavailable, "the zygote is not ready");
  }
  return {};
}

core::Result<void> Zygote::ready() {
  std::unique_lock lock(state_->mu);
  return state_->ready(lock);
}

core::Result<pid_t> Zygote::fork_child(const ZygoteRequest& request, std::function<void(ZygoteExit)> on_exit) {
  auto& s = *state_;
  nlohmann::json rlimits = nlohmann::json::array();
  std::vector<int> fds = {request.stdin_fd, request.stdout_fd, request.stderr_fd, request.result_fd};
  bool no_new_privs = false;
  if (request.steps != nullptr) {
    for (const auto& r : request.steps->rlimits) rlimits.push_back({r.resource, r.soft, r.hard});
    no_new_privs = request.steps->no_new_privs;
    fds.insert(fds.end(), request.steps->cgroup_procs_fds.begin(), request.steps->cgroup_procs_fds.end());
  }
  if (fds.size() > kMaxFds) return core::make_error(core::Errc::unavailable, "too many descriptors for the zygote");

  auto p = std::make_shared<State::Pending>();
  p->on_exit = std::move(on_exit);
  uint64_t id = 0;
  uint64_t gen = 0;
  {
    std::unique_lock lock(s.mu);
    if (auto r = s.ready(lock); !r) return r.error();
    id = s.next_id++;
    gen = s.generation;
    s.pending[id] = p;
  }
  const std::string body = nlohmann::json{
      {"id", id},
      {"cwd", request.cwd},
      {"env", request.env},
      {"rlimits", std::move(rlimits)},
      {"no_new_privs",
       no_new_privs}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  auto forget = [&](const std::string& why) {
    std::lock_guard lock(s.mu);
    s.pending.erase(id);
    return core::make_error(core::Errc::unavailable, why);
  };
  if (body.size() > kMaxPacket) return forget("the request is too large for the zygote (its environment?)");
  {
    std::lock_guard send_lock(s.send_mu);
    int fd = -1;
    {
      std::lock_guard lock(s.mu);
      if (gen == s.generation && s.work.valid()) fd = s.work.get();
    }
    if (fd < 0) return forget("the zygote died");
    iovec iov{const_cast<char*>(body.data()), body.size()};
    std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()), 0);
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control.data();
    mh.msg_controllen = control.size();
    cmsghdr* cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(cm), fds.data(), sizeof(int) * fds.size());
    ssize_t n = -1;
    do {
      n = ::sendmsg(fd, &mh, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n != static_cast<ssize_t>(body.size()))
      return forget(std::string("cannot reach the zygote: ") + std::strerror(errno));
  }
  std::unique_lock lock(s.mu);
  if (!s.cv.wait_for(lock, s.options.fork_wait, [&] { return p->answered; })) {
    p->abandoned = true;
    // A zygote that does not answer is stuck (stopped, or starved past reason): it is
    // killed, which fails what it runs, and the next invocation starts a new one.
    if (gen == s.generation && s.pid > 0) {
      spdlog::warn("invoke: zygote {} did not answer a fork in {} ms; killing it", s.pid, s.options.fork_wait.count());
      ::kill(s.pid, SIGKILL);
    }
    return core::make_error(core::Errc::unavailable, "the zygote did not fork in time");
  }
  if (!p->error.empty()) return core::make_error(core::Errc::unavailable, p->error);
  return p->pid;
}

}  // namespace execd::invoke
