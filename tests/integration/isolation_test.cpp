// Issue 11's building blocks as the daemon shows them: GET /capabilities, the isolation
// flags, and the daemon's cgroup parent (made at start, removed at exit, swept after a
// crash).
#include <doctest/doctest.h>

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "support/daemon_process.hpp"
#include "support/http_checks.hpp"

using execd::test::connect_loopback;
using execd::test::DaemonProcess;
using execd::test::shell_output;
using nlohmann::json;

namespace {

/// The v1 pids-hierarchy directory `pid` runs in ("" when there is none).
std::string pids_cgroup_dir(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
  for (std::string line; std::getline(in, line);) {
    const auto c1 = line.find(':');
    const auto c2 = line.find(':', c1 + 1);
    if (line.substr(c1 + 1, c2 - c1 - 1) == "pids") {
      std::string path = line.substr(c2 + 1);
      return "/sys/fs/cgroup/pids" + (path == "/" ? std::string() : path);
    }
  }
  return {};
}

/// Entries of `dir` starting with `prefix`.
std::vector<std::string> entries(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      if (std::string(e->d_name).rfind(prefix, 0) == 0) out.emplace_back(e->d_name);
    }
    ::closedir(d);
  }
  return out;
}

}  // namespace

TEST_CASE("GET /capabilities: levels and limits with mechanisms and reasons, and the flag defaults") {
  DaemonProcess d({"--isolation", "process", "--memory-limit-mb", "256", "--max-processes", "64"});
  auto r = d.client()->Get("/capabilities");
  REQUIRE(r);
  CHECK(r->status == 200);
  const json body = json::parse(r->body);
  INFO("GET /capabilities: ", r->body);  // the reasons, when a check below fails
  for (const char* level : {"none", "process", "namespace"}) {
    REQUIRE(body["levels"].contains(level));
    CHECK(body["levels"][level]["supported"].is_boolean());
    CHECK(body["levels"][level]["reason"].is_string());
  }
  CHECK(body["levels"]["process"]["supported"] == true);
  // bubblewrap is a runtime dependency (Makefile APT_RUNTIME) and works here.
  CHECK(body["levels"]["namespace"]["supported"] == true);
  for (const char* limit : {"memory_limit_mb", "max_processes", "cpu_time_limit_s", "max_output_bytes",
                            "max_open_files", "disk_limit_mb"}) {
    REQUIRE(body["limits"].contains(limit));
    CHECK(body["limits"][limit]["supported"].is_boolean());
    CHECK(body["limits"][limit]["mechanism"].is_string());
    CHECK(body["limits"][limit]["reason"].is_string());
  }
  // Root on this host: memory and pids go through a cgroup, CPU time through RLIMIT_CPU.
  const std::string mem = body["limits"]["memory_limit_mb"]["mechanism"];
  CHECK(mem.rfind("cgroup-v", 0) == 0);
  CHECK(body["limits"]["max_processes"]["mechanism"] == mem);
  CHECK(body["limits"]["cpu_time_limit_s"]["mechanism"] == "rlimit");
  CHECK(body["cgroup"]["version"].get<int>() >= 1);
  CHECK(body["defaults"]["isolation"] == "process");
  CHECK(body["defaults"]["memory_limit_mb"] == 256);
  CHECK(body["defaults"]["max_processes"] == 64);
  CHECK(body["defaults"]["cpu_time_limit_s"].is_null());
}

TEST_CASE("bad isolation flags stop the daemon at start with one line naming the flag") {
  const std::string bin = std::getenv("EXECD_BIN");
  const auto level = shell_output(bin + " --isolation container 2>&1; echo rc=$?");
  CHECK(level.find("--isolation") != std::string::npos);
  CHECK(level.find("none, process or namespace") != std::string::npos);
  CHECK(level.find("rc=2") != std::string::npos);
  const auto negative = shell_output(bin + " --memory-limit-mb -5 2>&1; echo rc=$?");
  CHECK(negative.find("--memory-limit-mb") != std::string::npos);
  CHECK(negative.find("rc=2") != std::string::npos);
  const auto word = shell_output(bin + " --max-processes many 2>&1; echo rc=$?");
  CHECK(word.find("--max-processes") != std::string::npos);
  CHECK(word.find("rc=2") != std::string::npos);
}

TEST_CASE("the daemon's cgroup parent exists while it runs, goes with it, and a crashed one is swept") {
  std::string dir;
  std::string name;
  {
    DaemonProcess d;
    dir = pids_cgroup_dir(d.pid());
    REQUIRE_FALSE(dir.empty());
    const auto mine = entries(dir, "execd-" + std::to_string(d.pid()) + "-");
    REQUIRE(mine.size() == 1);
    name = mine.front();
    // The pool's spare groups are made ahead (--cgroup-pool-size, default 4): the parent
    // is not empty when the daemon stops, and must go anyway.
    for (int i = 0; i < 250 && entries(dir + "/" + name, "spare-").size() < 4; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    CHECK(entries(dir + "/" + name, "spare-").size() == 4);
    CHECK(d.stop(SIGTERM, std::chrono::seconds(10)) == 0);
    INFO("the daemon's log: ", d.log());
    struct stat st {};
    CHECK(::stat((dir + "/" + name).c_str(), &st) != 0);
  }
  struct stat st {};

  std::string crashed;
  {
    DaemonProcess d;
    const auto mine = entries(dir, "execd-" + std::to_string(d.pid()) + "-");
    REQUIRE(mine.size() == 1);
    crashed = dir + "/" + mine.front();
    d.stop(SIGKILL, std::chrono::seconds(10));
  }
  CHECK(::stat(crashed.c_str(), &st) == 0);  // a SIGKILLed daemon cannot clean up
  {
    DaemonProcess next;  // sweeps at start
    CHECK(::stat(crashed.c_str(), &st) != 0);
  }
}

TEST_CASE("a daemon that exits with a connection still open past the grace period removes its cgroups anyway") {
  DaemonProcess d({"--graceful-shutdown-timeout", "1s"});
  const std::string dir = pids_cgroup_dir(d.pid());
  REQUIRE_FALSE(dir.empty());
  const auto mine = entries(dir, "execd-" + std::to_string(d.pid()) + "-");
  REQUIRE(mine.size() == 1);
  // A command in a cgroup of its own under the daemon's parent.
  auto r = d.client()->Post("/command", R"({"command": "sleep 313.25", "background": true})", "application/json");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  // The pool's spares, made ahead: they must go too.
  for (int i = 0; i < 250 && entries(dir + "/" + mine.front(), "spare-").empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(!entries(dir + "/" + mine.front(), "spare-").empty());
  // Half a request: the server waits for the rest, so the connection outlives the grace.
  // A whole request first, answered, so that a server thread already serves this
  // connection (a connection no thread has picked up yet is simply closed at the stop),
  // then the half, and time for that thread to be reading it.
  const int held = connect_loopback(d.port());
  REQUIRE(held >= 0);
  const std::string whole = "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n";
  REQUIRE(::write(held, whole.data(), whole.size()) == static_cast<ssize_t>(whole.size()));
  char answer[4096];
  REQUIRE(::read(held, answer, sizeof answer) > 0);
  REQUIRE(std::string(answer, 12) == "HTTP/1.1 200");
  const std::string partial = "GET /ping HTTP/1.1\r\nHost: x\r\n";
  REQUIRE(::write(held, partial.data(), partial.size()) == static_cast<ssize_t>(partial.size()));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const int status = d.stop(SIGTERM, std::chrono::seconds(15));
  ::close(held);
  INFO("the daemon's log: ", d.log());
  CHECK(status == 0);
  CHECK(d.log().find("exiting anyway") != std::string::npos);  // the path under test was taken
  struct stat st {};
  CHECK(::stat((dir + "/" + mine.front()).c_str(), &st) != 0);
  CHECK(shell_output("pgrep -fx 'sleep 313.25' | wc -l").find('0') == 0);
}
