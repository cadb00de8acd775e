// Create -> /ping on the gateway's process backend beside its floor, measured in one run:
// the floor is a bare `bwrap ... execd --port 0 --port-file F` (the same bubblewrap argv
// the backend builds, without cgroup, quota, keeper or record) until /ping answers.
//   build-x/bench/gateway_create EXECD_BINARY [runs]     (root, for the cgroups)
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "core/fd_io.hpp"
#include "gateway/backends/process_backend.hpp"
#include "http/client.hpp"
#include "isolation/bwrap_command.hpp"

using namespace execd;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

constexpr const char* kToken = "bench-token";

bool ping(int port) {
  http::ClientRequest req;
  req.target = "/ping";
  req.timeout = std::chrono::milliseconds(2000);
  req.headers.emplace_back("X-EXECD-ACCESS-TOKEN", kToken);
  auto r = http::send_request({"127.0.0.1", port, ""}, req);
  return r.ok() && r->status == 200;
}

/// Waits (bounded) for a port file, then for /ping; the port, or 0 on timeout.
int wait_ping(const std::string& port_file, std::chrono::seconds limit) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    const std::string text = core::read_file(port_file);
    if (!text.empty()) {
      const int port = std::atoi(text.c_str());
      while (Clock::now() < deadline) {
        if (ping(port)) return port;
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return 0;
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

/// One bare bwrap + execd start until /ping answers; -1 on failure.
double bare_start(const std::string& execd, const std::string& dir) {
  fs::create_directories(dir + "/ws");
  fs::create_directories(dir + "/run");
  isolation::BwrapCommand::Options o;
  o.network = true;
  o.workspace = dir + "/ws";
  o.workspace_target = "/workspace";
  o.die_with_parent = true;
  o.env = {"PATH=/usr/bin:/bin"};
  o.binds.push_back({execd, "/.execd/bin/execd", false});
  o.binds.push_back({dir + "/run", "/.execd/run", true});
  auto argv = isolation::BwrapCommand::build(o,
                                             {"/.execd/bin/execd", "--host", "127.0.0.1", "--port", "0", "--port-file",
                                              "/.execd/run/port", "--isolation", "none", "--access-token", kToken},
                                             isolation::SystemLayout::host());
  if (!argv) return -1;
  std::vector<char*> a;
  for (auto& s : *argv) a.push_back(s.data());
  a.push_back(nullptr);
  const auto t0 = Clock::now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 1);
    ::dup2(null, 2);
    ::setsid();
    char* env[] = {nullptr};
    ::execve(a[0], a.data(), env);
    ::_exit(127);
  }
  const int port = wait_ping(dir + "/run/port", std::chrono::seconds(15));
  const double ms = ms_since(t0);
  ::kill(-pid, SIGKILL);
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  fs::remove_all(dir);
  return port > 0 ? ms : -1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s EXECD_BINARY [runs]\n", argv[0]);
    return 2;
  }
  const std::string execd = fs::canonical(argv[1]).string();
  const int runs = argc > 2 ? std::atoi(argv[2]) : 20;
  char tmpl[] = "/tmp/gateway-create-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return 1;
  const std::string base = tmpl;

  gateway::ProcessBackend::Options o;
  o.execd_binary = execd;
  o.state_dir = base + "/state";
  auto backend = gateway::ProcessBackend::open(o);
  if (!backend) {
    std::fprintf(stderr, "process backend: %s\n", backend.error().message.c_str());
    return 1;
  }
  gateway::SandboxSpec spec;
  spec.image = "host";
  spec.limits.memory_bytes = 256ull << 20;
  spec.limits.max_pids = 256;

  std::vector<double> floor_ms;
  std::vector<double> create_ms;
  for (int i = 0; i < runs; ++i) {
    // Interleaved, so both see the same machine load.
    if (const double ms = bare_start(execd, base + "/bare-" + std::to_string(i)); ms >= 0) floor_ms.push_back(ms);
    const std::string id = "bench-" + std::to_string(i);
    const auto t0 = Clock::now();
    auto placed = (*backend)->create(id, spec, kToken);
    if (!placed) {
      std::fprintf(stderr, "create: %s\n", placed.error().message.c_str());
      return 1;
    }
    while (!ping(placed->port) && ms_since(t0) < 15000) std::this_thread::sleep_for(std::chrono::microseconds(200));
    create_ms.push_back(ms_since(t0));
    if (auto r = (*backend)->remove(*placed); !r) std::fprintf(stderr, "remove: %s\n", r.error().message.c_str());
  }
  fs::remove_all(base);
  const double f50 = percentile(floor_ms, 0.5);
  const double c50 = percentile(create_ms, 0.5);
  std::printf("runs: %d\n", runs);
  std::printf("floor  bare bwrap+execd -> /ping: p50 %.1f ms  p99 %.1f ms\n", f50, percentile(floor_ms, 0.99));
  std::printf("process backend create -> /ping:  p50 %.1f ms  p99 %.1f ms\n", c50, percentile(create_ms, 0.99));
  std::printf("ratio (p50): %.2fx the floor\n", f50 > 0 ? c50 / f50 : 0.0);
  return 0;
}
