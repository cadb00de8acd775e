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

#include "core/fd_io.hpp"
#include "core/id.hpp"
#include "exec/event.hpp"

namespace execd::jupyter {
namespace {

// Some kernels (tslab, measured) never send `idle` for a request: execute_reply plus
// this grace ends the execution.
constexpr auto kIdleGrace = std::chrono::milliseconds(300);

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

std::vector<std::string> kernel_environment(const KernelSpec& spec) {
  std::map<std::string, std::string> env = spec.env;
  // Plots come back as image/png display_data instead of trying to open a window.
  if (env.count("MPLBACKEND") == 0 && std::getenv("MPLBACKEND") == nullptr) {
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline";
  }
  return process::environment_with(env);
}

}  // namespace

struct Kernel::Waiter {
  std::mutex mu;
  std::condition_variable cv;
  bool dead = false;
  std::string death;
  bool reaped = false;  // the exited process was collected (its pid may be reused now)
};

core::Result<std::unique_ptr<Kernel>> Kernel::start(const KernelSpec& spec, const std::string& cwd,
                                                    std::shared_ptr<process::ChildReaper> reaper,
                                                    std::chrono::milliseconds timeout) {
  // Ports are picked free and bound by the kernel a moment later; a kernel starting at
  // the same time can take one first. That start is simply tried again with new ports.
  for (int attempt = 1;; ++attempt) {
    auto k = start_once(spec, cwd, reaper, timeout);
    if (k || attempt == 3 || k.error().message.find("Address already in use") == std::string::npos) return k;
    spdlog::info("kernel {}: a port was taken meanwhile; starting again", spec.name);
  }
}

core::Result<std::unique_ptr<Kernel>> Kernel::start_once(const KernelSpec& spec, const std::string& cwd,
                                                         std::shared_ptr<process::ChildReaper> reaper,
                                                         std::chrono::milliseconds timeout) {
  std::unique_ptr<Kernel> k(new Kernel());
  k->spec_ = spec;
  k->reaper_ = std::move(reaper);
  k->waiter_ = std::make_shared<Waiter>();

  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/execd-kernel-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return core::make_error(core::Errc::unavailable, "cannot create a runtime directory for kernel " + spec.name);
  }
  k->runtime_dir_ = tmpl;  // mkdtemp makes it 0700
  ConnectionInfo info;
  info.shell_port = free_port();
  info.iopub_port = free_port();
  info.stdin_port = free_port();
  info.control_port = free_port();
  info.hb_port = free_port();
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
                                            {"transport", "tcp"},
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
  so.env = kernel_environment(spec);
  so.cwd = cwd;
  // The kernel process's own output (startup noise, a crash) goes to a log beside the
  // connection file, quoted when the kernel fails to start; cell output travels over iopub.
  so.output_file = k->runtime_dir_ + "/kernel.log";
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
    if (!w->reaped && ::waitpid(pid, nullptr, WNOHANG) == pid) {
      w->reaped = true;
      if (auto r = weak_reaper.lock()) r->disown(pid);
    }
    w->cv.notify_all();
  });

  // Ready = kernel_info_reply on shell and some iopub message for the same request
  // (proof that our subscription is live). Retried, since early requests may be lost.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  struct Ready {
    bool reply = false, iopub = false;
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
      w->cv.notify_all();
    });
    std::unique_lock<std::mutex> lock(k->waiter_->mu);
    k->waiter_->cv.wait_for(lock, std::chrono::milliseconds(500), [&] { return (ready->reply && ready->iopub) || k->waiter_->dead; });
    const bool ok = ready->reply && ready->iopub;
    const bool dead = k->waiter_->dead;
    const std::string death = k->waiter_->death;
    lock.unlock();
    k->client_->forget(id);
    if (ok) break;
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
  std::error_code ec;
  if (!runtime_dir_.empty()) std::filesystem::remove_all(runtime_dir_, ec);
}

void Kernel::interrupt() {
  if (spec_.interrupt_mode == "message") {
    client_->send(Channel::control, make_message("interrupt_request", nlohmann::json::object(), client_->session()), nullptr);
  } else {
    ::kill(pid_, SIGINT);
  }
}

Kernel::Outcome Kernel::execute(const std::string& code, const std::shared_ptr<exec::EventLog>& log,
                                std::chrono::milliseconds timeout) {
  struct State {
    bool reply = false, idle = false, error_seen = false;
    std::chrono::steady_clock::time_point reply_at;
  };
  auto state = std::make_shared<State>();
  auto w = waiter_;
  Message req = make_message("execute_request",
                             {{"code", code},
                              {"silent", false},
                              {"store_history", true},
                              {"user_expressions", nlohmann::json::object()},
                              {"allow_stdin", false},
                              {"stop_on_error", true}},
                             client_->session());
  const std::string id = req.id();
  client_->send(Channel::shell, std::move(req), [state, w, log](const Message& m, Channel c) {
    const std::string type = m.type();
    const auto& content = m.content;
    std::lock_guard<std::mutex> lock(w->mu);
    if (c == Channel::iopub) {
      if (type == "stream") {
        const bool is_stderr = content.value("name", "stdout") == "stderr";
        if (!m.stream_text_literal.empty()) {
          if (m.stream_text_literal != "\"\"") log->append(exec::events::stream_from_json_literal(is_stderr, m.stream_text_literal));
        } else if (const std::string text = content.value("text", ""); !text.empty()) {
          log->append(is_stderr ? exec::events::stderr_text(text) : exec::events::stdout_text(text));
        }
      } else if (type == "execute_result") {
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
      } else if (type == "status" && content.value("execution_state", "") == "idle") {
        state->idle = true;
      }
    } else if (c == Channel::shell && type == "execute_reply") {
      state->reply = true;
      state->reply_at = std::chrono::steady_clock::now();
      if (content.value("status", "") == "error" && !state->error_seen) {
        state->error_seen = true;
        log->append(exec::events::status("error"));
        log->append(exec::events::error(content.value("ename", "Error"), content.value("evalue", ""), {}));
      }
    }
    w->cv.notify_all();
  });

  Outcome out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool interrupted = false;
  std::unique_lock<std::mutex> lock(w->mu);
  for (;;) {
    if (state->reply && state->idle) break;
    if (w->dead) {
      out.died = true;
      out.death = w->death;
      break;
    }
    const auto now = std::chrono::steady_clock::now();
    if (state->reply && now - state->reply_at >= kIdleGrace) break;
    if (timeout.count() > 0 && now >= deadline && !interrupted) {
      interrupted = true;
      out.timed_out = true;
      lock.unlock();
      interrupt();
      lock.lock();
      continue;
    }
    w->cv.wait_for(lock, std::chrono::milliseconds(50));
  }
  lock.unlock();
  client_->forget(id);
  return out;
}

}  // namespace execd::jupyter
