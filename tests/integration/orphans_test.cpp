// Nothing outlives the daemon: its direct children die with it even on SIGKILL (parent-
// death signal), and a daemon started on the same --runtime-base ends the descendants a
// dead one left (recorded sessions) and removes its runtime directory with its spill files.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "support/daemon_process.hpp"
#include "support/proc_probe.hpp"
#include "support/sse_reader.hpp"
#include "support/temp_dir.hpp"

using execd::test::DaemonProcess;
using execd::test::sse_request;
using execd::test::SseRequest;
using execd::test::TempDir;
using execd::test::processes;
using execd::test::within;
using nlohmann::json;

namespace {

// Live (non-zombie) processes whose command line is exactly `marker` (words joined by spaces).
std::vector<pid_t> live_with(const std::string& marker) {
  std::vector<pid_t> out;
  for (const auto& p : processes()) {
    if (p.state != 'Z' && p.cmdline == marker) out.push_back(p.pid);
  }
  return out;
}

bool alive(pid_t pid) {
  const std::string stat = execd::test::read_file("/proc/" + std::to_string(pid) + "/stat");
  const auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
}

std::vector<std::string> runtime_dirs(const std::filesystem::path& base) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(base)) out.push_back(e.path().filename().string());
  return out;
}

// The parent pid of `pid` (from /proc/<pid>/stat), 0 if gone.
pid_t parent_of(pid_t pid) {
  const std::string stat = execd::test::read_file("/proc/" + std::to_string(pid) + "/stat");
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  char state = '?';
  int ppid = 0;
  if (std::sscanf(stat.c_str() + close + 1, " %c %d", &state, &ppid) != 2) return 0;
  return ppid;
}

}  // namespace

TEST_CASE("after SIGKILL, children die at once and the next daemon ends every descendant and removes its directory") {
  TempDir tmp;
  const auto base = tmp.path() / "runtime";
  // Unique durations name this test's processes.
  const std::string tag = std::to_string(700000 + (getpid() % 90000) * 3);
  const std::string cmd_child = "sleep " + tag + "1";
  const std::string cmd_grandchild = "sleep " + tag + "2";
  const std::string session_job = "sleep " + tag + "3";

  auto old = std::make_unique<DaemonProcess>(std::vector<std::string>{"--runtime-base", base.string()});
  const pid_t old_pid = old->pid();
  const auto old_dirs = runtime_dirs(base);
  REQUIRE(old_dirs.size() == 1);

  // A command whose shell forks a background grandchild and then waits in a child.
  SseRequest bg;
  bg.method = "POST";
  bg.path = "/command";
  bg.body = json{{"command", cmd_grandchild + " & " + cmd_child + "; echo done"}, {"background", true}}.dump();
  REQUIRE(sse_request(old->port(), bg).status == 200);
  // Output that spills, so the runtime directory holds files too.
  SseRequest big;
  big.method = "POST";
  big.path = "/command";
  big.body = json{{"command", "head -c 100000 /dev/zero | tr '\\0' x; echo; sleep " + tag + "4"}, {"background", true}}.dump();
  REQUIRE(sse_request(old->port(), big).status == 200);

  // A session with a background job left running.
  auto s = old->client()->Post("/session", "{}", "application/json");
  REQUIRE(s);
  REQUIRE(s->status == 200);
  const std::string session = json::parse(s->body).value("session_id", "");
  SseRequest run;
  run.method = "POST";
  run.path = "/session/" + session + "/run";
  run.body = json{{"command", session_job + " &"}}.dump();
  REQUIRE(sse_request(old->port(), run).status == 200);

  REQUIRE(within(std::chrono::seconds(5), [&] {
    return live_with(cmd_child).size() >= 1 && live_with(cmd_grandchild).size() == 1 && live_with(session_job).size() == 1 &&
           live_with("sleep " + tag + "4").size() >= 1;
  }));
  // The daemon's direct children: the command shells and the session's bash.
  std::vector<pid_t> direct;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (!std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    const pid_t pid = static_cast<pid_t>(std::stoi(name));
    if (parent_of(pid) == old_pid) direct.push_back(pid);
  }
  REQUIRE(direct.size() >= 3);
  const auto descendants = [&] {
    std::vector<pid_t> all;
    for (const auto& m : {cmd_child, cmd_grandchild, session_job, "sleep " + tag + "4"}) {
      for (pid_t p : live_with(m)) all.push_back(p);
    }
    return all;
  }();
  REQUIRE(std::filesystem::exists(base / old_dirs[0] / "spill"));

  old->stop(SIGKILL, std::chrono::seconds(5));
  // Direct children go with the daemon (PDEATHSIG), at once.
  CHECK(within(std::chrono::seconds(1), [&] {
    for (pid_t p : direct) {
      if (alive(p)) return false;
    }
    return true;
  }));
  // Descendants that do not get that signal may still run; the old directory is still there.
  CHECK(std::filesystem::exists(base / old_dirs[0]));

  // A new daemon on the same base ends them and removes the directory.
  DaemonProcess fresh({"--runtime-base", base.string()});
  const bool all_gone = within(std::chrono::seconds(2), [&] {
    for (pid_t p : descendants) {
      if (alive(p)) return false;
    }
    return true;
  });
  INFO("new daemon's log:\n" << fresh.log());
  CHECK(all_gone);
  CHECK(!std::filesystem::exists(base / old_dirs[0]));
  CHECK(runtime_dirs(base).size() == 1);
  for (pid_t p : descendants) {
    if (alive(p)) ::kill(p, SIGKILL);  // leave nothing behind a failed run
  }
}

TEST_CASE("a process that merely reuses a recorded pid is never ended") {
  // Processes not started by the dead daemon (this test's own sleep) survive the sweep,
  // even though they run in the same --runtime-base's lifetime.
  TempDir tmp;
  const auto base = tmp.path() / "runtime";
  auto old = std::make_unique<DaemonProcess>(std::vector<std::string>{"--runtime-base", base.string()});
  SseRequest bg;
  bg.method = "POST";
  bg.path = "/command";
  bg.body = json{{"command", "true"}}.dump();
  REQUIRE(sse_request(old->port(), bg).status == 200);
  old->stop(SIGKILL, std::chrono::seconds(5));

  const pid_t bystander = fork();
  REQUIRE(bystander >= 0);
  if (bystander == 0) {
    execl("/bin/sleep", "sleep", "30", static_cast<char*>(nullptr));
    _exit(127);
  }
  {
    DaemonProcess fresh({"--runtime-base", base.string()});
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    CHECK(alive(bystander));
  }
  ::kill(bystander, SIGKILL);
  ::waitpid(bystander, nullptr, 0);
}

TEST_CASE("a python kernel dies with a daemon that is SIGKILLed") {
  TempDir tmp;
  auto d = std::make_unique<DaemonProcess>(std::vector<std::string>{"--runtime-base", (tmp.path() / "rt").string()});
  auto r = d->client()->Post("/code/context", json{{"language", "python"}}.dump(), "application/json");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  std::vector<pid_t> kernels;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (!std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    const pid_t pid = static_cast<pid_t>(std::stoi(name));
    if (parent_of(pid) == d->pid() && alive(pid)) kernels.push_back(pid);
  }
  REQUIRE(!kernels.empty());
  d->stop(SIGKILL, std::chrono::seconds(5));
  CHECK(within(std::chrono::seconds(1), [&] {
    for (pid_t p : kernels) {
      if (alive(p)) return false;
    }
    return true;
  }));
  for (pid_t p : kernels) {
    if (alive(p)) ::kill(p, SIGKILL);
  }
}
