#include "jupyter/kernel.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include <spdlog/spdlog.h>

#include "core/envs_file.hpp"
#include "core/fd_io.hpp"
#include "core/id.hpp"
#include "core/path_expand.hpp"
#include "exec/event.hpp"
#include "jupyter/json_text.hpp"

namespace execd::jupyter {
namespace {

// A kernel that did not report `idle` at start: execute_reply plus this grace ends a cell.
constexpr auto kIdleGrace = std::chrono::milliseconds(300);
// A kernel that reports `idle` but lost one (tslab's sends can fail while it is busy
// writing), or went idle without a reply: the wait that ends it anyway.
constexpr auto kLostMessageWait = std::chrono::seconds(5);
// How long after a ready kernel_info_reply its `idle` may come to count as reported.
constexpr auto kIdleProbe = std::chrono::seconds(2);
// Stream text becomes events of at most this many bytes: a 50 MB print is never one
// 50 MB event (nor copies of it) in memory, and the event log can spill and cap it.
constexpr size_t kStreamPiece = 1024 * 1024;
// A kernel busy on a cell this long without execute_input gets a held-back interrupt
// anyway (kernels other than ipykernel need not send execute_input).
constexpr auto kInterruptHold = std::chrono::milliseconds(300);
constexpr auto kInterruptResendAfter = std::chrono::milliseconds(500);
constexpr int kInterruptResends = 10;  // 5 s: a loaded machine can be slow to reach the blocking call
// A cell interrupted for a limit that is still running this much later loses its kernel:
// code that catches KeyboardInterrupt, or spins in C, must not get past the limit.
constexpr auto kLimitGrace = std::chrono::seconds(3);
constexpr auto kCpuWatchInterval = std::chrono::milliseconds(250);

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}


// Level none: the daemon's environment plus the kernelspec's. Isolated: --envs-file and
// the kernelspec only (the Isolator adds PATH and HOME), never the daemon's variables.
std::vector<std::string> kernel_environment(const KernelSpec& spec, bool isolated, const std::string& envs_file) {
  std::map<std::string, std::string> env = isolated ? core::read_envs_file(envs_file) : std::map<std::string, std::string>{};
  for (const auto& [k, v] : spec.env) env[k] = v;
  // Plots come back as image/png display_data instead of trying to open a window.
  if (env.count("MPLBACKEND") == 0 && (isolated || std::getenv("MPLBACKEND") == nullptr)) {
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline";
  }
  if (!isolated) return process::environment_with(env);
  std::vector<std::string> out;
  for (const auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

}  // namespace

struct Kernel::Waiter {
  std::mutex mu;
  std::condition_variable cv;
  bool dead = false;
  std::string death;
  bool reaped = false;  // the exited process was collected (its pid may be reused now)
  int wait_status = 0;  // its status, once reaped
  std::shared_ptr<Cell> cell;  // the running cell, for interrupt()
};

struct Kernel::Cell {
  bool reply = false, idle = false, error_seen = false;
  bool started = false;          // execute_input seen: the kernel is inside the cell
  bool busy = false;
  std::chrono::steady_clock::time_point busy_at, reply_at, idle_at;
  bool interrupt_pending = false;  // asked for before the kernel began the cell
  bool interrupted = false;        // an interrupt was delivered
  std::chrono::steady_clock::time_point interrupt_sent_at;
  int interrupt_resends = 0;
  // execute_reply's status and error, reported at the end only if iopub brought no error:
  // the reply may overtake iopub's richer `error` (with its traceback) on the other socket.
  std::string reply_status, reply_ename, reply_evalue;
  // max_output_bytes: counted and capped on the iopub thread (the only one touching these
  // two); `output_capped` tells the waiting thread, under the waiter's lock.
  uint64_t output_bytes = 0;
  bool output_dropping = false;
  bool output_capped = false;
};

core::Result<std::unique_ptr<Kernel>> Kernel::start(const KernelSpec& spec, const Launch& launch) {
  // Ports are picked free and bound by the kernel a moment later; a kernel starting at
  // the same time can take one first. That start is simply tried again with new ports.
  for (int attempt = 1;; ++attempt) {
    auto k = start_once(spec, launch);
    if (k || attempt == 3 || k.error().message.find("Address already in use") == std::string::npos) return k;
    spdlog::info("kernel {}: a port was taken meanwhile; starting again", spec.name);
  }
}

core::Result<std::unique_ptr<Kernel>> Kernel::start_once(const KernelSpec& spec, const Launch& launch) {
  std::unique_ptr<Kernel> k(new Kernel());
  k->spec_ = spec;
  k->reaper_ = launch.reaper;
  k->waiter_ = std::make_shared<Waiter>();
  const std::string& cwd = launch.cwd;
  const auto timeout = launch.timeout;

  // Under the daemon's RuntimeDir: a daemon that dies leaves it to the next one to remove.
  const char* tmp = std::getenv("TMPDIR");
  const std::string base = !launch.runtime_base.empty() ? launch.runtime_base : tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
  std::string tmpl = base + "/execd-kernel-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return core::make_error(core::Errc::unavailable, "cannot create a runtime directory for kernel " + spec.name);
  }
  k->runtime_dir_ = tmpl;  // mkdtemp makes it 0700
  const bool guarded = isolation::ExecutionGuard::needed(launch.limits);
  if (guarded && !launch.isolator) {
    return core::make_error(core::Errc::invalid_argument, "isolation and limits are not available in this daemon");
  }
  const bool sandboxed = launch.limits.level == isolation::Level::namespace_;
  ConnectionInfo info;
  if (sandboxed) {
    // No network in the sandbox: ZeroMQ over socket files in the runtime directory (0700,
    // bound into the sandbox at the same path). Ports are only name suffixes then.
    info.transport = "ipc";
    info.ip = k->runtime_dir_ + "/kernel";
    info.shell_port = 1;
    info.iopub_port = 2;
    info.stdin_port = 3;
    info.control_port = 4;
    info.hb_port = 5;
  } else {
    info.shell_port = free_port();
    info.iopub_port = free_port();
    info.stdin_port = free_port();
    info.control_port = free_port();
    info.hb_port = free_port();
  }
  info.key = core::random_hex(32);
  const std::string conn_file = k->runtime_dir_ + "/connection.json";
  {
    const int fd = ::open(conn_file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return core::make_error(core::Errc::unavailable, "cannot write the connection file of kernel " + spec.name);
    const std::string body = nlohmann::json{{"shell_port", info.shell_port},
                                            {"iopub_port", info.iopub_port},
                                            {"stdin_port", info.stdin_port},
                                            {"control_port", info.control_port},
                                            {"hb_port", info.hb_port},
                                            {"ip", info.ip},
                                            {"key", info.key},
                                            {"transport", info.transport},
                                            {"signature_scheme", "hmac-sha256"},
                                            {"kernel_name", spec.name}}
                                 .dump();
    const bool ok = core::write_all(fd, body);
    ::close(fd);
    if (!ok) return core::make_error(core::Errc::unavailable, "cannot write the connection file of kernel " + spec.name);
  }

  process::SpawnOptions so;
  for (const auto& a : spec.argv) {
    std::string arg = a;
    for (size_t pos; (pos = arg.find("{connection_file}")) != std::string::npos;) arg.replace(pos, 17, conn_file);
    for (size_t pos; (pos = arg.find("{resource_dir}")) != std::string::npos;) arg.replace(pos, 14, spec.resource_dir);
    so.argv.push_back(arg);
  }
  so.env = kernel_environment(spec, guarded, launch.envs_file);
  so.cwd = cwd;
  // The kernel process's own output (startup noise, a crash) goes to a log beside the
  // connection file, quoted when the kernel fails to start; cell output travels over iopub.
  so.output_file = k->runtime_dir_ + "/kernel.log";
  if (guarded) {
    const std::string id = "k-" + std::filesystem::path(k->runtime_dir_).filename().string();
    auto made = isolation::ExecutionGuard::make(*launch.isolator, launch.limits, so, id,
                                                sandboxed ? std::vector<std::string>{k->runtime_dir_} : std::vector<std::string>{},
                                                /*cpu_limit_per_unit=*/true);
    if (!made) return made.error();
    k->guard_ = std::move(made).value();
  }
  auto child = k->reaper_->spawn(so);
  if (!child) {
    return core::make_error(core::Errc::unavailable,
                            "kernel " + spec.name + " (" + spec.argv.front() + ") failed to start: " + child.error().message);
  }
  k->pid_ = child->pid;
  k->pidfd_ = std::move(child->pidfd);

  k->client_ = std::make_unique<KernelClient>(info, k->pidfd_.get());
  std::weak_ptr<Waiter> weak = k->waiter_;
  const pid_t pid = k->pid_;
  std::weak_ptr<process::ChildReaper> weak_reaper = k->reaper_;
  k->client_->on_dead([weak, pid, weak_reaper](const std::string& why) {
    auto w = weak.lock();
    if (!w) return;
    std::lock_guard<std::mutex> lock(w->mu);
    w->dead = true;
    w->death = why;
    // An exited kernel is collected now, not when its context next runs a cell.
    if (!w->reaped && ::waitpid(pid, &w->wait_status, WNOHANG) == pid) {
      w->reaped = true;
      if (auto r = weak_reaper.lock()) r->disown(pid);
    }
    w->cv.notify_all();
  });

  // Ready = kernel_info_reply on shell and some iopub message for the same request
  // (proof that our subscription is live). Retried, since early requests may be lost.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  struct Ready {
    bool reply = false, iopub = false, idle = false;
  };
  for (;;) {
    auto ready = std::make_shared<Ready>();
    auto w = k->waiter_;
    Message req = make_message("kernel_info_request", nlohmann::json::object(), k->client_->session());
    const std::string id = req.id();
    k->client_->send(Channel::shell, std::move(req), [ready, w](const Message& m, Channel c) {
      std::lock_guard<std::mutex> lock(w->mu);
      if (c == Channel::shell && m.type() == "kernel_info_reply") ready->reply = true;
      if (c == Channel::iopub) ready->iopub = true;
      if (c == Channel::iopub && m.type() == "status" && m.content.value("execution_state", "") == "idle") ready->idle = true;
      w->cv.notify_all();
    });
    std::unique_lock<std::mutex> lock(k->waiter_->mu);
    k->waiter_->cv.wait_for(lock, std::chrono::milliseconds(500), [&] { return (ready->reply && ready->iopub) || k->waiter_->dead; });
    const bool ok = ready->reply && ready->iopub;
    if (ok) {
      // Does it report idle? Its status for this very request tells (the reply can come
      // before it: separate sockets).
      k->waiter_->cv.wait_for(lock, kIdleProbe, [&] { return ready->idle || k->waiter_->dead; });
      k->sends_idle_ = ready->idle;
    }
    const bool dead = k->waiter_->dead;
    const std::string death = k->waiter_->death;
    lock.unlock();
    k->client_->forget(id);
    if (ok && !dead) break;
    if (dead) {
      std::string log = core::read_file(k->runtime_dir_ + "/kernel.log");
      if (log.size() > 600) log = "..." + log.substr(log.size() - 600);
      return core::make_error(core::Errc::unavailable, "kernel " + spec.name + " (" + spec.argv.front() +
                                                           ") died while starting: " + death + (log.empty() ? "" : "; its output: " + log));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return core::make_error(core::Errc::unavailable, "kernel " + spec.name + " did not answer within " +
                                                           std::to_string(timeout.count()) + " ms (--kernel-start-timeout)");
    }
  }
  // Up and answering: from now on a silent heartbeat means a hung or dead kernel.
  k->client_->watch_heartbeat();
  spdlog::debug("kernel {} (pid {}) ready; reports idle: {}", spec.name, k->pid_, k->sends_idle_);
  return k;
}

Kernel::~Kernel() {
  if (client_ && waiter_) {
    // Ask politely; the client's IO thread notices the exit (pidfd) and reaps it.
    if (!client_->is_dead()) {
      client_->send(Channel::control, make_message("shutdown_request", {{"restart", false}}, client_->session()), nullptr);
    }
    std::unique_lock<std::mutex> lock(waiter_->mu);
    waiter_->cv.wait_for(lock, std::chrono::seconds(1), [&] { return waiter_->reaped; });
  }
  client_.reset();  // its thread is gone after this: nobody else reaps now
  const bool reaped = waiter_ && waiter_->reaped;
  if (pid_ > 0) {
    // The group goes too: whatever the kernel started must not outlive it.
    process::signal_group(pid_, SIGKILL);
    if (!reaped) {
      ::waitpid(pid_, nullptr, 0);
      reaper_->disown(pid_);
    }
  }
  // Whatever is left in the kernel's cgroup (its children, a sandbox's processes) is
  // killed and reaped, the cgroup removed, before the ipc directory goes.
  guard_.reset();
  std::error_code ec;
  if (!runtime_dir_.empty()) std::filesystem::remove_all(runtime_dir_, ec);
}

std::optional<isolation::LimitHit> Kernel::limit_hit() const {
  if (!guard_) return std::nullopt;
  int status = 0;
  {
    std::lock_guard<std::mutex> lock(waiter_->mu);
    status = waiter_->wait_status;
  }
  return guard_->limit_hit(status, cell_baseline_);
}

void Kernel::send_interrupt() {
  if (spec_.interrupt_mode == "message") {
    client_->send(Channel::control, make_message("interrupt_request", nlohmann::json::object(), client_->session()), nullptr);
  } else if (guard_ && guard_->in_namespace()) {
    // pid_ is bwrap, which a SIGINT would end: the kernel is reached inside the sandbox
    // through the cgroup's members (host pids).
    guard_->signal(SIGINT, pid_);
  } else {
    ::kill(pid_, SIGINT);
  }
}

void Kernel::kill_for_limit() {
  // At namespace level pid_ is bwrap: its group goes, and the cgroup's members with it.
  if (guard_) guard_->signal(SIGKILL, pid_);
  process::signal_group(pid_, SIGKILL);
}

void Kernel::interrupt() {
  {
    std::lock_guard<std::mutex> lock(waiter_->mu);
    auto cell = waiter_->cell;
    // A message interrupt is handled by the kernel whenever it comes; a signal only once
    // the kernel is inside the cell (execute() delivers it then).
    if (cell && !cell->started && spec_.interrupt_mode != "message") {
      cell->interrupt_pending = true;
      waiter_->cv.notify_all();
      return;
    }
    if (cell) {
      cell->interrupted = true;
      cell->interrupt_sent_at = std::chrono::steady_clock::now();
    }
  }
  send_interrupt();
}

namespace {

// Stream text (a JSON literal, quotes included) as events of at most kStreamPiece bytes.
void append_stream(exec::EventLog& log, bool is_stderr, std::string_view literal) {
  if (literal.size() <= 2) return;  // ""
  const std::string_view body = literal.substr(1, literal.size() - 2);
  if (body.size() <= kStreamPiece) {
    log.append(exec::events::stream_from_json_literal(is_stderr, literal));
    return;
  }
  std::string piece_literal;
  for (std::string_view piece : split_json_string_body(body, kStreamPiece)) {
    // A full log keeps nothing more: stop building events it would drop.
    if (!log.accepting()) return;
    piece_literal.assign(1, '"');
    piece_literal.append(piece);
    piece_literal.push_back('"');
    log.append(exec::events::stream_from_json_literal(is_stderr, piece_literal));
  }
}

// max_output_bytes for one stream message (a JSON literal, quotes included): true when it
// fits whole (counted into `used`); otherwise `cut` gets what still fits, as a literal
// (empty: nothing), and false: the cap is reached.
bool admit_stream(uint64_t& used, uint64_t cap, std::string_view literal, std::string& cut) {
  const std::string_view body = literal.size() >= 2 ? literal.substr(1, literal.size() - 2) : std::string_view{};
  if (used + body.size() <= cap) {
    used += body.size();
    return true;
  }
  const uint64_t room = cap > used ? cap - used : 0;
  used = cap;
  if (room > 0) {
    const auto pieces = split_json_string_body(body, room);
    // The first piece is at most `room` bytes and never splits an escape or a character.
    if (!pieces.empty() && pieces.front().size() <= room) cut = "\"" + std::string(pieces.front()) + "\"";
  }
  return false;
}

isolation::LimitHit cell_limit_hit(isolation::Limit limit, uint64_t value) {
  if (limit == isolation::Limit::output_bytes) {
    return {limit, value, "output limit of " + std::to_string(value) + " bytes reached (max_output_bytes); later output was dropped"};
  }
  return {limit, value, "CPU time limit of " + std::to_string(value) + " s reached by this cell (cpu_time_limit_s)"};
}

}  // namespace

Kernel::Outcome Kernel::execute(const std::string& code, const std::shared_ptr<exec::EventLog>& log,
                                std::chrono::milliseconds timeout, bool interrupt_at_start) {
  auto state = std::make_shared<Cell>();
  state->interrupt_pending = interrupt_at_start;
  auto w = waiter_;
  Message req = make_message("execute_request",
                             {{"code", code},
                              {"silent", false},
                              {"store_history", true},
                              {"user_expressions", nlohmann::json::object()},
                              {"allow_stdin", false},
                              // Each POST /code is a request of its own: a failed or interrupted
                              // cell must not make the kernel abort the cells queued behind it
                              // (ipykernel does, with stop_on_error, for requests it already holds).
                              {"stop_on_error", false}},
                             client_->session());
  const std::string id = req.id();
  {
    std::lock_guard<std::mutex> lock(w->mu);
    w->cell = state;
  }
  const auto output_cap = guard_ ? guard_->limits().get(isolation::Limit::output_bytes) : std::nullopt;
  const bool cpu_watch = guard_ && guard_->has_cgroup() && guard_->limits().get(isolation::Limit::cpu_time_s);
  // The cgroup's counters as this cell begins: its CPU use, and what ended a kernel that
  // dies in it (limit_hit()), are counted from here.
  cell_baseline_ = guard_ && guard_->has_cgroup() ? guard_->usage() : isolation::CgroupUsage{};
  const isolation::CgroupUsage cpu_baseline = cell_baseline_;
  auto next_cpu_check = std::chrono::steady_clock::now() + kCpuWatchInterval;
  std::optional<std::chrono::steady_clock::time_point> limit_interrupted_at;
  bool limit_killed = false;
  client_->send(Channel::shell, std::move(req), [state, w, log, output_cap](const Message& m, Channel c) {
    const std::string type = m.type();
    const auto& content = m.content;
    // Events are built outside the waiter's lock (a 1 MiB piece at a time for big output).
    if (c == Channel::iopub && type == "stream") {
      const bool is_stderr = content.value("name", "stdout") == "stderr";
      if (state->output_dropping) return;
      // From here on the cell's output is dropped; execute() interrupts the cell.
      auto cap_reached = [&] {
        state->output_dropping = true;
        std::lock_guard<std::mutex> lock(w->mu);
        state->output_capped = true;
        w->cv.notify_all();
      };
      if (!m.stream_text_literal.empty()) {
        std::string_view literal = m.stream_text_literal;
        std::string cut;
        if (output_cap && !admit_stream(state->output_bytes, *output_cap, literal, cut)) {
          if (!cut.empty()) append_stream(*log, is_stderr, cut);
          cap_reached();
          return;
        }
        append_stream(*log, is_stderr, literal);
      } else if (const std::string text = content.value("text", ""); !text.empty()) {
        // Text that needed repair: counted whole, and dropped whole past the cap.
        if (output_cap && state->output_bytes + text.size() > *output_cap) {
          cap_reached();
          return;
        }
        state->output_bytes += text.size();
        log->append(is_stderr ? exec::events::stderr_text(text) : exec::events::stdout_text(text));
      }
      return;
    }
    if (m.skipped_content_bytes > 0 && c == Channel::iopub) {
      log->append(exec::events::status("a " + type + " message of " + std::to_string(m.skipped_content_bytes) +
                                       " bytes was dropped: larger than the " +
                                       std::to_string(DecodeLimits{}.max_content_bytes) + " bytes one message may have"));
      return;
    }
    std::lock_guard<std::mutex> lock(w->mu);
    if (c == Channel::iopub) {
      if (type == "execute_result") {
        log->append(exec::events::execution_count(content.value("execution_count", 0)));
        log->append(exec::events::result(content.value("data", nlohmann::json::object())));
      } else if (type == "display_data" || type == "update_display_data") {
        log->append(exec::events::result(content.value("data", nlohmann::json::object())));
      } else if (type == "error") {
        state->error_seen = true;
        log->append(exec::events::status("error"));
        std::vector<std::string> tb;
        for (const auto& t : content.value("traceback", nlohmann::json::array())) {
          if (t.is_string()) tb.push_back(t.get<std::string>());
        }
        log->append(exec::events::error(content.value("ename", ""), content.value("evalue", ""), tb));
      } else if (type == "execute_input") {
        state->started = true;
      } else if (type == "status" && content.value("execution_state", "") == "busy" && !state->busy) {
        state->busy = true;
        state->busy_at = std::chrono::steady_clock::now();
      } else if (type == "status" && content.value("execution_state", "") == "idle") {
        state->idle = true;
        state->idle_at = std::chrono::steady_clock::now();
      }
    } else if (c == Channel::shell && type == "execute_reply") {
      state->reply = true;
      state->reply_at = std::chrono::steady_clock::now();
      state->reply_status = content.value("status", "");
      state->reply_ename = content.value("ename", "Error");
      state->reply_evalue = content.value("evalue", "");
    }
    w->cv.notify_all();
  });

  Outcome out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool timeout_sent = false;
  std::unique_lock<std::mutex> lock(w->mu);
  for (;;) {
    if (state->reply && state->idle) break;
    if (w->dead) {
      out.died = true;
      out.death = w->death;
      break;
    }
    const auto now = std::chrono::steady_clock::now();
    if (state->reply && now - state->reply_at >= (sends_idle_ ? std::chrono::milliseconds(kLostMessageWait) : kIdleGrace)) {
      if (sends_idle_) spdlog::warn("kernel {} (pid {}): no idle {} s after execute_reply; cell ended", spec_.name, pid_, kLostMessageWait.count());
      break;
    }
    if (state->idle && !state->reply && (state->interrupted || now - state->idle_at >= kLostMessageWait)) {
      if (state->interrupted) {
        if (!state->error_seen) {  // a KeyboardInterrupt in the user's code was reported already
          log->append(exec::events::status("error"));
          log->append(exec::events::error("KeyboardInterrupt", "the cell was interrupted before it could finish", {}));
        }
      } else {
        log->append(exec::events::status("error"));
        log->append(exec::events::error("KernelError", "the kernel went idle without replying to this cell", {}));
      }
      break;
    }
    // A held-back interrupt goes once the kernel is inside the cell.
    if (state->interrupt_pending && (state->started || (state->busy && now - state->busy_at >= kInterruptHold))) {
      state->interrupt_pending = false;
      state->interrupted = true;
      state->interrupt_sent_at = now;
      lock.unlock();
      send_interrupt();
      lock.lock();
      continue;
    }
    // A SIGINT that lands between Python's last check for signals and a blocking call
    // (time.sleep) is acted on only when that call returns: signalled again if the cell
    // shows no sign of it (an error, a reply, idle) after a while.
    if (state->interrupted && spec_.interrupt_mode != "message" && !state->error_seen && !state->reply && !state->idle &&
        state->interrupt_resends < kInterruptResends && now - state->interrupt_sent_at >= kInterruptResendAfter) {
      ++state->interrupt_resends;
      state->interrupt_sent_at = now;
      lock.unlock();
      send_interrupt();
      lock.lock();
      continue;
    }
    // A per-cell limit: the cell is interrupted once, and its kernel killed if it runs on.
    if (!out.limit) {
      std::optional<isolation::Limit> hit;
      if (state->output_capped) {
        hit = isolation::Limit::output_bytes;
      } else if (cpu_watch && now >= next_cpu_check) {
        next_cpu_check = now + kCpuWatchInterval;
        lock.unlock();
        const bool exceeded = guard_->cpu_exceeded(cpu_baseline);
        lock.lock();
        if (exceeded) hit = isolation::Limit::cpu_time_s;
      }
      if (hit) {
        out.limit = cell_limit_hit(*hit, guard_->limits().get(*hit).value_or(0));
        limit_interrupted_at = now;
        lock.unlock();
        log->append(exec::events::status(out.limit->message + ": the cell is interrupted"));
        interrupt();
        lock.lock();
        continue;
      }
    } else if (!limit_killed && limit_interrupted_at && now - *limit_interrupted_at >= kLimitGrace) {
      limit_killed = true;
      spdlog::warn("kernel {} (pid {}): cell still running {} s after its {} limit; killing the kernel", spec_.name, pid_,
                   kLimitGrace.count(), isolation::field_name(out.limit->limit));
      guard_->record_kill(out.limit->limit);
      lock.unlock();
      kill_for_limit();
      lock.lock();
      continue;
    }
    if (timeout.count() > 0 && now >= deadline && !timeout_sent) {
      timeout_sent = true;
      out.timed_out = true;
      lock.unlock();
      interrupt();
      lock.lock();
      continue;
    }
    w->cv.wait_for(lock, std::chrono::milliseconds(50));
  }
  if (!state->error_seen && state->reply_status == "error") {
    log->append(exec::events::status("error"));
    log->append(exec::events::error(state->reply_ename, state->reply_evalue, {}));
  } else if (!state->error_seen && state->reply_status == "aborted") {
    // The kernel skipped the cell without running it: say so rather than end it as a success.
    log->append(exec::events::status("error"));
    log->append(exec::events::error("CellAborted", "the kernel did not run this cell (it aborted it after an earlier error or interrupt); run it again", {}));
  }
  w->cell.reset();
  lock.unlock();
  client_->forget(id);
  return out;
}

}  // namespace execd::jupyter
