// Descriptors and user code: a child sees exactly its stdio (no client socket, nothing
// the daemon inherited or a library opened); a finished execution that is retained
// holds no descriptor, while its output stays readable in full; the daemon runs with the
// hard limit on descriptors; sessions and commands by the thousand leak nothing.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
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
using execd::test::SseResponse;
using execd::test::TempDir;
using execd::test::fd_count;
using nlohmann::json;

namespace {

SseResponse run(const DaemonProcess& d, const json& body) {
  SseRequest req;
  req.method = "POST";
  req.path = "/command";
  req.body = body.dump();
  return sse_request(d.port(), req);
}

std::string stdout_text(const SseResponse& r) {
  std::string out;
  for (const auto& e : r.of_type("stdout")) out += e.json.value("text", "") + "\n";
  return out;
}

size_t threads_of(pid_t pid) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) ++n;
  return n;
}

// What /proc/<pid>/fd/* point to, one "fd -> target" per line (for failure messages).
std::string describe_fds(pid_t pid) {
  std::string out;
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    std::error_code ec;
    out += e.path().filename().string() + " -> " + std::filesystem::read_symlink(e.path(), ec).string() + "\n";
  }
  return out;
}

// The daemon inherits `fd` open on `path` without CLOEXEC, as from a careless parent.
struct InheritedFd {
  InheritedFd(int fd, const std::string& path) : fd_(fd) {
    const int f = ::open(path.c_str(), O_RDWR | O_CREAT, 0600);  // no O_CLOEXEC on purpose
    REQUIRE(f >= 0);
    REQUIRE(::dup2(f, fd) == fd);
    if (f != fd) ::close(f);
  }
  ~InheritedFd() { ::close(fd_); }
  int fd_;
};

}  // namespace

TEST_CASE("a command sees only its stdio: no client socket, nothing inherited, nothing a library opened") {
  TempDir tmp;
  const std::string marker = (tmp.path() / "inherited-marker").string();
  std::unique_ptr<DaemonProcess> d;
  {
    InheritedFd inherited(7, marker);
    d = std::make_unique<DaemonProcess>();
  }
  // The daemon really holds fd 7 (else the test proves nothing).
  REQUIRE(describe_fds(d->pid()).find("inherited-marker") != std::string::npos);

  // ls lists its own descriptors: 0-2 and the one it reads /proc/self/fd with.
  auto r = run(*d, {{"command", "ls -l /proc/self/fd/ | tail -n +2"}});
  REQUIRE(r.status == 200);
  const std::string out = stdout_text(r);
  INFO("the command's descriptors:\n" << out);
  CHECK(out.find("socket:") == std::string::npos);
  CHECK(out.find("inherited-marker") == std::string::npos);
  CHECK(out.find("anon_inode") == std::string::npos);  // eventfd/epoll of ZeroMQ or the reactor
  std::istringstream lines(out);
  std::string line;
  int count = 0;
  while (std::getline(lines, line)) {
    if (!line.empty()) ++count;
  }
  CHECK(count == 4);

  // Exactly 0-2 and the directory ls reads, at the lowest free number.
  auto shell = run(*d, {{"command", "exec ls /proc/self/fd"}});
  CHECK(stdout_text(shell) == "0\n1\n2\n3\n");

  // A bash session's shell and what it runs: same rule.
  auto s = d->client()->Post("/session", "{}", "application/json");
  REQUIRE(s);
  REQUIRE(s->status == 200);
  const std::string session = json::parse(s->body).value("session_id", "");
  SseRequest req;
  req.method = "POST";
  req.path = "/session/" + session + "/run";
  req.body = json{{"command", "ls -l /proc/self/fd/ /proc/$$/fd/ 2>&1"}}.dump();
  auto sr = sse_request(d->port(), req);
  std::string session_out = stdout_text(sr);
  INFO("in a session:\n" << session_out);
  CHECK(session_out.find("/proc/self/fd/") != std::string::npos);
  CHECK(session_out.find("socket:") == std::string::npos);
  CHECK(session_out.find("inherited-marker") == std::string::npos);
}

TEST_CASE("a retained finished execution holds no descriptor; its logs and events stay readable in full") {
  // A small event memory so each command's events spill too, not only its raw output.
  DaemonProcess d({"--event-log-memory", "4096"});
  // Warm up once: the first command brings up threads and the spill directory.
  run(d, {{"command", "true"}});
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const size_t baseline = fd_count(d.pid());

  constexpr int kCommands = 60;
  std::vector<std::string> ids;
  for (int i = 0; i < kCommands; ++i) {
    // 400 lines of 100 bytes: 40 KB, past the 16 KiB an output log keeps in memory.
    auto r = run(d, {{"command", "for i in $(seq 1 400); do printf '%099d\\n' $i; done"}});
    REQUIRE(r.status == 200);
    REQUIRE(!r.events.empty());
    ids.push_back(r.events[0].json.value("text", ""));
    REQUIRE(r.of_type("execution_complete").size() == 1);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const size_t after = fd_count(d.pid());
  INFO("descriptors before " << baseline << ", after " << kCommands << " retained commands " << after << ":\n"
                             << describe_fds(d.pid()));
  CHECK(after <= baseline + 4);

  std::string expected;
  for (int i = 1; i <= 400; ++i) {
    char line[128];
    std::snprintf(line, sizeof line, "%099d\n", i);
    expected += line;
  }
  for (const auto& id : {ids.front(), ids[kCommands / 2], ids.back()}) {
    auto logs = d.client()->Get("/command/" + id + "/logs?cursor=0");
    REQUIRE(logs);
    CHECK(logs->status == 200);
    CHECK(logs->body == expected);
    SseRequest replay;
    replay.path = "/executions/" + id + "/events";
    auto ev = sse_request(d.port(), replay);
    CHECK(ev.of_type("stdout").size() == 400);
    CHECK(stdout_text(ev) == expected);
    CHECK(ev.of_type("execution_complete").size() == 1);
  }
  // Reading opened the files for the read only.
  CHECK(fd_count(d.pid()) <= baseline + 4);
}

TEST_CASE("the daemon raises its soft descriptor limit to the hard limit") {
  rlimit saved{};
  REQUIRE(getrlimit(RLIMIT_NOFILE, &saved) == 0);
  if (saved.rlim_max < 2048) {
    MESSAGE("hard limit " << saved.rlim_max << " leaves nothing to raise");
    return;
  }
  // The daemon inherits a low soft limit, as under a default shell.
  rlimit low = saved;
  low.rlim_cur = 1024;
  REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
  std::unique_ptr<DaemonProcess> d;
  try {
    d = std::make_unique<DaemonProcess>();
  } catch (...) {
    setrlimit(RLIMIT_NOFILE, &saved);
    throw;
  }
  setrlimit(RLIMIT_NOFILE, &saved);
  std::ifstream in("/proc/" + std::to_string(d->pid()) + "/limits");
  std::string line;
  bool seen = false;
  while (std::getline(in, line)) {
    if (line.rfind("Max open files", 0) != 0) continue;
    std::istringstream fields(line.substr(14));
    std::string soft, hard;
    fields >> soft >> hard;
    CHECK(soft == hard);
    CHECK(soft == (saved.rlim_max == RLIM_INFINITY ? std::string("unlimited") : std::to_string(saved.rlim_max)));
    seen = true;
  }
  CHECK(seen);
}

TEST_CASE("1,000 sessions created and deleted and 2,000 commands leave no descriptor or thread behind") {
  DaemonProcess d({"--execution-retention", "1s"});
  run(d, {{"command", "true"}});
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const size_t fds_before = fd_count(d.pid());
  auto c = d.client();
  c->set_keep_alive(true);
  for (int i = 0; i < 1000; ++i) {
    auto s = c->Post("/session", "{}", "application/json");
    REQUIRE(s);
    REQUIRE(s->status == 200);
    const std::string id = json::parse(s->body).value("session_id", "");
    auto del = c->Delete("/session/" + id);
    REQUIRE(del);
    REQUIRE(del->status == 200);
  }
  for (int i = 0; i < 2000; ++i) {
    auto r = c->Post("/command", R"({"command":"echo hi"})", "application/json");
    REQUIRE(r);
    REQUIRE(r->status == 200);
  }
  // Retention (1 s) passes; the next command sweeps the finished ones.
  std::this_thread::sleep_for(std::chrono::milliseconds(2200));
  auto r = c->Post("/command", R"({"command":"true"})", "application/json");
  REQUIRE(r);
  c->stop();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const size_t fds_after = fd_count(d.pid());
  INFO("descriptors before " << fds_before << ", after " << fds_after << ":\n" << describe_fds(d.pid()));
  CHECK(fds_after <= fds_before + 4);
  // HTTP threads are elastic (idle ones exit after 5 s); the rest must not grow per session.
  CHECK(threads_of(d.pid()) < 40);
  auto ping = d.client()->Get("/ping");
  REQUIRE(ping);
  CHECK(ping->status == 200);
}

TEST_CASE("the access token never reaches a command: not in its environment, not in the daemon's /proc environ or cmdline") {
  const std::string env_secret = "env-token-5e1f0c2a9b";
  const std::string flag_secret = "flag-token-77c4d3e8a1";
  for (const bool by_flag : {false, true}) {
    const std::string secret = by_flag ? flag_secret : env_secret;
    execd::test::DaemonProcess d(by_flag ? std::vector<std::string>{"--access-token", secret} : std::vector<std::string>{},
                                 by_flag ? std::vector<std::string>{} : std::vector<std::string>{"EXECD_ACCESS_TOKEN=" + secret});
    execd::test::SseRequest req;
    req.method = "POST";
    req.path = "/command";
    req.headers = {{"X-EXECD-ACCESS-TOKEN", secret}};
    // What a command can read: its own environment and the daemon's /proc files.
    req.body = nlohmann::json{{"command", "env; tr '\\0' ' ' < /proc/" + std::to_string(d.pid()) + "/environ; tr '\\0' ' ' < /proc/" +
                                              std::to_string(d.pid()) + "/cmdline; echo END"}}
                   .dump();
    auto s = execd::test::sse_request(d.port(), req);
    INFO(s.raw);
    REQUIRE(s.status == 200);
    CHECK(s.raw.find("END") != std::string::npos);
    CHECK(s.raw.find(secret) == std::string::npos);
    // The daemon still checks it.
    req.headers = {{"X-EXECD-ACCESS-TOKEN", "wrong"}};
    CHECK(execd::test::sse_request(d.port(), req).status == 401);
  }
}
