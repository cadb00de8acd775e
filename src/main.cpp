// execd: argv + environment -> Config -> App; signals; exit code.
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "app.hpp"
#include "core/config.hpp"
#include "core/logging.hpp"
#include "deferred_openssl_init.hpp"

extern char** environ;

namespace {

std::map<std::string, std::string> environment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv(*e);
    const auto eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return env;
}

// Secrets must not reach what the daemon runs: commands at level none inherit the
// daemon's environment, and any process of the same user can read the daemon's
// /proc/<pid>/environ and cmdline, which show the original argv and environment blocks.
// So the access token's and the callback key's bytes are overwritten in place (what /proc
// shows) and their variables removed, once the config holds its own copies.
void scrub_secrets(int argc, char** argv) {
  constexpr std::pair<std::string_view, std::string_view> kSecrets[] = {
      {"EXECD_ACCESS_TOKEN", "--access-token"}, {"EXECD_CALLBACK_SECRET", "--callback-secret"}};
  for (const auto& [var, flag] : kSecrets) {
    const std::string prefix = std::string(var) + "=";
    for (char** e = environ; *e != nullptr; ++e) {
      if (std::string_view(*e).substr(0, prefix.size()) == prefix) std::memset(*e + prefix.size(), 'x', std::strlen(*e + prefix.size()));
    }
    ::unsetenv(std::string(var).c_str());
    const std::string flag_eq = std::string(flag) + "=";
    for (int i = 1; i < argc; ++i) {
      const std::string_view arg(argv[i]);
      if (arg == flag && i + 1 < argc) {
        std::memset(argv[i + 1], 'x', std::strlen(argv[i + 1]));
      } else if (arg.substr(0, flag_eq.size()) == flag_eq) {
        std::memset(argv[i] + flag_eq.size(), 'x', arg.size() - flag_eq.size());
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  execd::begin_openssl_init_forwarding();
  // Descriptors 0-2 must be taken before anything opens a pipe: a daemon started with
  // one of them closed would otherwise get a pipe there, and a child's dup2 onto its own
  // stdio would leave it close-on-exec.
  for (int fd = 0; fd <= 2; ++fd) {
    if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd) return 2;
  }
  auto config = execd::core::parse_config(std::vector<std::string>(argv + 1, argv + argc), environment());
  if (!config) {
    std::fprintf(stderr, "execd: %s\n", config.error().message.c_str());
    return 2;
  }
  scrub_secrets(argc, argv);
  if (config->show_help) {
    std::fputs(execd::core::config_help().c_str(), stdout);
    return 0;
  }
  if (auto r = execd::core::setup_logging(config->log_level, config->log_file); !r) {
    std::fprintf(stderr, "execd: %s\n", r.error().message.c_str());
    return 2;
  }
  // Each open stream holds a socket: take the hard limit on descriptors.
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  // Many HTTP threads, little allocation each: a few malloc arenas keep RSS flat.
  mallopt(M_ARENA_MAX, 2);

  // Signals are taken by one thread with sigwait; every other thread inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  const auto grace = config->graceful_shutdown_timeout;
  const std::string host = config->host;
  const std::string port_file = config->port_file;
  execd::App app(std::move(config).value());
  auto port = app.start();
  if (!port) {
    spdlog::critical("{}", port.error().message);
    return 1;
  }
  spdlog::info("execd listening on {}:{}", host, *port);
  // A supervisor (execd-gateway's process backend) started us with --port 0 and waits
  // for this file: written whole under a temp name, then renamed, so it never reads half.
  if (!port_file.empty()) {
    const std::string tmp = port_file + ".tmp";
    std::FILE* f = std::fopen(tmp.c_str(), "we");
    const bool written = f != nullptr && std::fprintf(f, "%d\n", *port) > 0;
    if (f != nullptr && std::fclose(f) != 0) return 1;
    if (!written || std::rename(tmp.c_str(), port_file.c_str()) != 0) {
      spdlog::critical("cannot write the port file {}", port_file);
      return 1;
    }
  }

  std::mutex mu;
  std::condition_variable cv;
  bool served = false;
  std::thread signal_thread([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    spdlog::info("received signal {}; shutting down (grace {} ms)", sig, grace.count());
    app.stop();
    std::unique_lock<std::mutex> lock(mu);
    if (!cv.wait_for(lock, grace + std::chrono::seconds(1), [&] { return served; })) {
      spdlog::warn("connections still open after the grace period; exiting anyway");
      spdlog::shutdown();
      _exit(0);
    }
  });

  app.run();
  {
    std::lock_guard<std::mutex> lock(mu);
    served = true;
  }
  cv.notify_all();
  // run() normally returns after the signal thread called stop(); if the listener
  // failed on its own, wake that thread so shutdown still goes through it once.
  pthread_kill(signal_thread.native_handle(), SIGTERM);
  signal_thread.join();
  spdlog::info("execd stopped");
  return 0;
}
