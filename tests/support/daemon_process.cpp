#include "support/daemon_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <regex>
#include <stdexcept>

extern char** environ;

namespace execd::test {

DaemonProcess::DaemonProcess(std::vector<std::string> extra_args, std::vector<std::string> extra_env,
                             Program program) {
  const char* bin_var = program == Program::gateway ? "EXECD_GATEWAY_BIN" : "EXECD_BIN";
  const std::string name = program == Program::gateway ? "execd-gateway" : "execd";
  const char* bin = std::getenv(bin_var);
  if (bin == nullptr) throw std::runtime_error(std::string(bin_var) + " is not set (run through meson test)");
  std::vector<std::string> args = {bin, "--port", "0", "--host", "127.0.0.1", "--log-level", "info"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
  env_strings.insert(env_strings.end(), extra_env.begin(), extra_env.end());
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);

  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  // fork+exec rather than posix_spawn: the daemon must die with a test that crashes
  // (PDEATHSIG) and must not hold the test's stdout open, or a crashed run never ends.
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ < 0) {
    close(fds[0]);
    close(fds[1]);
    throw std::runtime_error("cannot fork " + name + ": " + std::strerror(errno));
  }
  if (pid_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    const int devnull = open("/dev/null", O_RDWR);
    dup2(devnull, STDIN_FILENO);
    dup2(devnull, STDOUT_FILENO);
    dup2(fds[1], STDERR_FILENO);
    execve(bin, argv.data(), envp.data());
    _exit(127);
  }
  close(fds[1]);
  stderr_fd_ = fds[0];

  // Read until the bound address shows up.
  static const std::regex kListening(R"(listening on [^\s:]+:(\d+))");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  std::string seen;
  while (port_ == 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{stderr_fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    char buf[4096];
    const ssize_t n = read(stderr_fd_, buf, sizeof buf);
    if (n <= 0) break;
    seen.append(buf, static_cast<size_t>(n));
    std::smatch m;
    if (std::regex_search(seen, m, kListening)) port_ = std::stoi(m[1]);
  }
  log_ = seen;
  if (port_ == 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    exited_ = true;
    close(stderr_fd_);
    throw std::runtime_error(name + " did not report a listening port; its log:\n" + seen);
  }
  drain_ = std::thread([this] {
    char buf[4096];
    for (;;) {
      const ssize_t n = read(stderr_fd_, buf, sizeof buf);
      if (n <= 0) break;
      std::lock_guard<std::mutex> lock(log_mu_);
      log_.append(buf, static_cast<size_t>(n));
    }
  });
}

DaemonProcess::~DaemonProcess() {
  if (!exited_) stop(SIGTERM, std::chrono::seconds(10));
  if (drain_.joinable()) drain_.join();
  if (stderr_fd_ >= 0) close(stderr_fd_);
}

int DaemonProcess::stop(int sig, std::chrono::milliseconds timeout) {
  if (exited_) return -1;
  kill(pid_, sig);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      return status;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, &status, 0);
  exited_ = true;
  return -1;
}

std::unique_ptr<httplib::Client> DaemonProcess::client() const {
  auto c = std::make_unique<httplib::Client>("127.0.0.1", port_);
  c->set_tcp_nodelay(true);
  c->set_connection_timeout(std::chrono::seconds(5));
  c->set_read_timeout(std::chrono::seconds(30));
  c->set_write_timeout(std::chrono::seconds(30));
  return c;
}

std::string DaemonProcess::log() const {
  std::lock_guard<std::mutex> lock(log_mu_);
  return log_;
}

long DaemonProcess::rss_kib() const {
  std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

std::string shell_output(const std::string& cmd) {
  std::string out;
  FILE* f = popen(cmd.c_str(), "r");
  if (f == nullptr) return out;
  char buf[4096];
  size_t n = 0;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  pclose(f);
  return out;
}

}  // namespace execd::test
