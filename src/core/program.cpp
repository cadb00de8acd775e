#include "core/program.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include <spdlog/spdlog.h>

extern char** environ;

namespace execd::core {

std::map<std::string, std::string> environment_map() {
  std::map<std::string, std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv(*e);
    const auto eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return env;
}

bool take_standard_descriptors() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) < 0 && ::open("/dev/null", O_RDWR) != fd) return false;
  }
  return true;
}

sigset_t block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return set;
}

bool write_port_file(const std::string& path, int port) {
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "we");
  const bool written = f != nullptr && std::fprintf(f, "%d\n", port) > 0;
  if (f != nullptr && std::fclose(f) != 0) return false;
  return written && std::rename(tmp.c_str(), path.c_str()) == 0;
}

void serve_until_signal(const sigset_t& signals, std::chrono::milliseconds grace, const std::function<void()>& run,
                        const std::function<void()>& stop, const std::function<void()>& abandon) {
  std::mutex mu;
  std::condition_variable cv;
  bool served = false;
  std::thread signal_thread([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    spdlog::info("received signal {}; shutting down (grace {} ms)", sig, grace.count());
    stop();
    std::unique_lock<std::mutex> lock(mu);
    if (!cv.wait_for(lock, grace + std::chrono::seconds(1), [&] { return served; })) {
      spdlog::warn("connections still open after the grace period; exiting anyway");
      if (abandon) abandon();
      spdlog::shutdown();
      _exit(0);
    }
  });
  run();
  {
    std::lock_guard<std::mutex> lock(mu);
    served = true;
  }
  cv.notify_all();
  // Wakes the signal thread when `run` returned on its own (it is still in sigwait).
  pthread_kill(signal_thread.native_handle(), SIGTERM);
  signal_thread.join();
}

}  // namespace execd::core
