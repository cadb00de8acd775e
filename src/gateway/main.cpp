// execd-gateway: argv + environment -> GatewayConfig -> GatewayApp; signals; exit code.
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "core/logging.hpp"
#include "deferred_openssl_init.hpp"
#include "gateway/gateway_app.hpp"
#include "gateway/gateway_config.hpp"

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

// Written whole under a temp name, then renamed: a supervisor never reads half a port.
bool write_port_file(const std::string& path, int port) {
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "we");
  const bool written = f != nullptr && std::fprintf(f, "%d\n", port) > 0;
  if (f != nullptr && std::fclose(f) != 0) return false;
  return written && std::rename(tmp.c_str(), path.c_str()) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  execd::begin_openssl_init_forwarding();
  // Descriptors 0-2 must be taken before anything opens a pipe (see src/main.cpp).
  for (int fd = 0; fd <= 2; ++fd) {
    if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd) return 2;
  }
  auto config =
      execd::gateway::parse_gateway_config(std::vector<std::string>(argv + 1, argv + argc), environment());
  if (!config) {
    std::fprintf(stderr, "execd-gateway: %s\n", config.error().message.c_str());
    return 2;
  }
  if (config->show_help) {
    std::fputs(execd::gateway::gateway_config_help().c_str(), stdout);
    return 0;
  }
  if (auto r = execd::core::setup_logging(config->log_level, config->log_file); !r) {
    std::fprintf(stderr, "execd-gateway: %s\n", r.error().message.c_str());
    return 2;
  }
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
  execd::gateway::GatewayApp app(std::move(config).value());
  auto port = app.start();
  if (!port) {
    spdlog::critical("{}", port.error().message);
    return 1;
  }
  spdlog::info("execd-gateway listening on {}:{}", host, *port);
  if (!port_file.empty() && !write_port_file(port_file, *port)) {
    spdlog::critical("cannot write the port file {}", port_file);
    return 1;
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
  pthread_kill(signal_thread.native_handle(), SIGTERM);
  signal_thread.join();
  app.stop();
  spdlog::info("execd-gateway stopped; its sandboxes keep running");
  return 0;
}
