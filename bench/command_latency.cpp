// Foreground command round trips through execd (POST /command, SSE read to the end)
// beside the bare posix_spawn+wait of the same shell command, in one run, so the
// difference is what the daemon adds. Usage: command_latency PORT [RUNS] [CLIENTS]
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

struct Figures {
  double p50, p99;
};

Figures percentiles(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v[std::min(v.size() - 1, v.size() * 99 / 100)]};
}

// What execd runs for {"command": cmd}: bash -c cmd, output to a pipe we drain.
double bare_spawn(const std::string& cmd) {
  const auto t0 = Clock::now();
  int fds[2];
  if (pipe(fds) != 0) std::abort();
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  std::string c = cmd;
  char bash[] = "/bin/bash";
  char dash_c[] = "-c";
  char* argv[] = {bash, dash_c, c.data(), nullptr};
  pid_t pid = 0;
  if (posix_spawn(&pid, "/bin/bash", &fa, nullptr, argv, environ) != 0) std::abort();
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  char buf[4096];
  while (read(fds[0], buf, sizeof buf) > 0) {
  }
  close(fds[0]);
  waitpid(pid, nullptr, 0);
  return ms_since(t0);
}

double via_execd(httplib::Client& cli, const std::string& body) {
  const auto t0 = Clock::now();
  auto r = cli.Post("/command", body, "application/json");
  if (!r || r->status != 200 || r->body.find("execution_complete") == std::string::npos) {
    std::fprintf(stderr, "request failed\n");
    std::exit(1);
  }
  return ms_since(t0);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s PORT [RUNS] [CLIENTS]\n", argv[0]);
    return 2;
  }
  const int port = std::atoi(argv[1]);
  const int runs = argc > 2 ? std::atoi(argv[2]) : 2000;
  const int clients = argc > 3 ? std::atoi(argv[3]) : 16;
  httplib::Client cli("127.0.0.1", port);
  cli.set_keep_alive(true);
  cli.set_tcp_nodelay(true);

  std::printf("%-10s %10s %10s %10s %10s %12s %s\n", "command", "bare p50", "bare p99", "execd p50", "execd p99",
              "overhead p50", "verdict (<0.5 ms)");
  for (const std::string cmd : {"true", "echo hi"}) {
    const std::string body = std::string(R"({"command":")") + cmd + "\"}";
    for (int i = 0; i < 50; ++i) {  // warm-up
      bare_spawn(cmd);
      via_execd(cli, body);
    }
    std::vector<double> bare, daemon;
    // Interleaved, so drift in machine load hits both sides alike.
    for (int i = 0; i < runs; ++i) {
      bare.push_back(bare_spawn(cmd));
      daemon.push_back(via_execd(cli, body));
    }
    const auto b = percentiles(bare);
    const auto d = percentiles(daemon);
    const double overhead = d.p50 - b.p50;
    std::printf("%-10s %9.3fms %9.3fms %9.3fms %9.3fms %11.3fms %s\n", cmd.c_str(), b.p50, b.p99, d.p50, d.p99,
                overhead, overhead < 0.5 ? "PASS" : "MISS");
  }

  // Throughput: `clients` concurrent keep-alive clients, each running `echo hi`.
  for (const bool through_daemon : {false, true}) {
    std::atomic<int> done{0};
    const auto t0 = Clock::now();
    std::vector<std::thread> threads;
    for (int c = 0; c < clients; ++c) {
      threads.emplace_back([&] {
        httplib::Client own("127.0.0.1", port);
        own.set_keep_alive(true);
        own.set_tcp_nodelay(true);
        for (int i = 0; i < runs / clients; ++i) {
          if (through_daemon) {
            via_execd(own, R"({"command":"echo hi"})");
          } else {
            bare_spawn("echo hi");
          }
          ++done;
        }
      });
    }
    for (auto& t : threads) t.join();
    const double secs = ms_since(t0) / 1000.0;
    std::printf("%d concurrent clients, %s: %.0f commands/s\n", clients,
                through_daemon ? "through execd" : "bare spawn  ", done / secs);
  }
  return 0;
}
