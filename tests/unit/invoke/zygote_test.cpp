// invoke::Zygote against a real python3 fork server: what a child gets (descriptors, cwd,
// environment, rlimits, no_new_privs), how its end is reported (status, rusage), a zygote
// killed under a running child, stop(), and the spare child forked ahead of a request.
#include "invoke/zygote.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "core/unique_fd.hpp"
#include "process/proc_table.hpp"
#include "support/temp_dir.hpp"

using namespace execd;
using nlohmann::json;

namespace {

bool alive(pid_t pid) {
  auto id = process::read_identity(pid);
  return id && id->state != 'Z';
}

// One child's plumbing: the code and event on stdin, stdout/stderr pipes, the result memfd.
struct Child {
  core::UniqueFd in_r, in_w, out_r, out_w, err_r, err_w, result;
  std::promise<invoke::ZygoteExit> exited;

  explicit Child(const std::string& code, const json& event = nullptr) {
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    in_r.reset(p[0]);
    in_w.reset(p[1]);
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    out_r.reset(p[0]);
    out_w.reset(p[1]);
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    err_r.reset(p[0]);
    err_w.reset(p[1]);
    result.reset(::memfd_create("result", MFD_CLOEXEC));
    const std::string body = json{{"code", code}, {"event", event}}.dump();
    REQUIRE(::write(in_w.get(), body.data(), body.size()) == static_cast<ssize_t>(body.size()));
    in_w.reset();
  }
  invoke::ZygoteRequest request(const std::string& cwd, std::vector<std::string> env) const {
    invoke::ZygoteRequest r;
    r.stdin_fd = in_r.get();
    r.stdout_fd = out_w.get();
    r.stderr_fd = err_w.get();
    r.result_fd = result.get();
    r.cwd = cwd;
    r.env = std::move(env);
    return r;
  }
  json result_doc() const {
    std::string buf(1 << 16, '\0');
    const ssize_t n = ::pread(result.get(), buf.data(), buf.size(), 0);
    REQUIRE(n > 0);
    return json::parse(buf.substr(0, static_cast<size_t>(n)));
  }
};

struct Fixture {
  std::shared_ptr<process::Reactor> reactor = std::make_shared<process::Reactor>();
  std::shared_ptr<process::ChildReaper> reaper = std::make_shared<process::ChildReaper>(reactor);
  invoke::Zygote zygote{reactor, reaper, invoke::Zygote::Options{}};
};

}  // namespace

TEST_CASE("a forked child gets its descriptors, cwd, environment and limits; its end is reported") {
  Fixture f;
  test::TempDir dir;
  Child c(
      "import os, resource\n"
      "def handler(e):\n"
      "    print('out', e)\n"
      "    st = open('/proc/self/status').read()\n"
      "    return {'cwd': os.getcwd(), 'env': dict(os.environ), 'nofile': "
      "resource.getrlimit(resource.RLIMIT_NOFILE)[0],\n"
      "            'nnp': 'NoNewPrivs:\\t1' in st, 'sid': os.getsid(0) == os.getpid(), 'fds': "
      "sorted(os.listdir('/proc/self/fd'))}\n",
      7);
  isolation::ChildSteps steps;
  steps.rlimits.push_back({RLIMIT_NOFILE, 32, 32});
  steps.no_new_privs = true;
  auto req = c.request(dir.str(), {"ONLY=this", "PATH=/usr/bin:/bin"});
  req.steps = &steps;
  auto pid = f.zygote.fork_child(req, [&](invoke::ZygoteExit x) { c.exited.set_value(x); });
  REQUIRE(pid);
  CHECK(f.zygote.pid() > 0);
  c.out_w.reset();
  c.err_w.reset();
  auto fut = c.exited.get_future();
  REQUIRE(fut.wait_for(std::chrono::seconds(30)) == std::future_status::ready);
  const auto x = fut.get();
  CHECK(x.pid == *pid);
  CHECK_FALSE(x.lost);
  CHECK(WIFEXITED(x.wait_status));
  CHECK(WEXITSTATUS(x.wait_status) == 0);
  CHECK(x.usage.ru_maxrss > 1000);  // KiB: the child's, collected by its parent
  const auto doc = c.result_doc();
  INFO(doc.dump());
  REQUIRE(doc["ok"] == true);
  CHECK(doc["value"]["cwd"] == dir.str());
  CHECK(doc["value"]["env"] == json{{"ONLY", "this"}, {"PATH", "/usr/bin:/bin"}});
  CHECK(doc["value"]["nofile"] == 32);
  CHECK(doc["value"]["nnp"] == true);
  CHECK(doc["value"]["sid"] == true);
  // 0-3 and listdir's own: the control socket and everything else were closed.
  CHECK(doc["value"]["fds"] == json::array({"0", "1", "2", "3", "4"}));
  char buf[64] = {};
  CHECK(::read(c.out_r.get(), buf, sizeof buf - 1) > 0);
  CHECK(std::string(buf) == "out 7\n");
}

TEST_CASE("a killed zygote reports its running child lost; stop() ends it and its children") {
  Fixture f;
  test::TempDir dir;
  Child c("import time\ndef handler(e):\n    time.sleep(60)\n");
  auto pid = f.zygote.fork_child(c.request(dir.str(), {"PATH=/usr/bin:/bin"}),
                                 [&](invoke::ZygoteExit x) { c.exited.set_value(x); });
  REQUIRE(pid);
  const pid_t zygote = f.zygote.pid();
  REQUIRE(zygote > 0);
  REQUIRE(::kill(zygote, SIGKILL) == 0);
  auto fut = c.exited.get_future();
  REQUIRE(fut.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  CHECK(fut.get().lost);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (alive(*pid) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK_FALSE(alive(*pid));  // died with its zygote
  // Started again by the next request (restarts are at most one a second).
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  Child next("import time\ndef handler(e):\n    time.sleep(60)\n");
  auto again =
      f.zygote.fork_child(next.request(dir.str(), {}), [&](invoke::ZygoteExit x) { next.exited.set_value(x); });
  REQUIRE(again);
  const pid_t second = f.zygote.pid();
  CHECK(second != zygote);
  f.zygote.stop();
  CHECK(f.zygote.pid() == -1);
  auto fut2 = next.exited.get_future();
  REQUIRE(fut2.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  CHECK(fut2.get().lost);
  CHECK_FALSE(alive(second));
  const auto deadline2 = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (alive(*again) && std::chrono::steady_clock::now() < deadline2)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK_FALSE(alive(*again));
}

namespace {

// The zygote's live children that are not `except`: its spares while nothing runs.
std::vector<pid_t> children_of(pid_t parent, pid_t except = -1) {
  std::vector<pid_t> out;
  for (const auto& p : process::list_processes()) {
    if (p.ppid == parent && p.pid != except && p.state != 'Z') out.push_back(p.pid);
  }
  return out;
}

bool within(std::chrono::milliseconds limit, const std::function<bool()>& pred) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

}  // namespace

TEST_CASE("a request is taken by the spare forked before it, and the next spare is forked then") {
  Fixture f;
  test::TempDir dir;
  REQUIRE(f.zygote.ready());
  const pid_t zygote = f.zygote.pid();
  REQUIRE(zygote > 0);
  std::vector<pid_t> spares;
  REQUIRE(within(std::chrono::seconds(10), [&] { return (spares = children_of(zygote)).size() == 1; }));
  const pid_t spare = spares[0];
  // Warmed up and waiting: blocked in recvmsg on the work socket (a request sent while it
  // still warms up may go to another spare forked for it).
  REQUIRE(within(std::chrono::seconds(10), [&] {
    std::ifstream in("/proc/" + std::to_string(spare) + "/syscall");
    long nr = -1;
    return static_cast<bool>(in >> nr) && nr == SYS_recvmsg;
  }));
  Child c("import os\ndef handler(e):\n    return [os.getpid(), os.getppid()]\n");
  auto pid = f.zygote.fork_child(c.request(dir.str(), {"PATH=/usr/bin:/bin"}),
                                 [&](invoke::ZygoteExit x) { c.exited.set_value(x); });
  REQUIRE(pid);
  CHECK(*pid == spare);  // the request ran in the child that existed before it
  c.out_w.reset();
  c.err_w.reset();
  auto fut = c.exited.get_future();
  REQUIRE(fut.wait_for(std::chrono::seconds(30)) == std::future_status::ready);
  const auto x = fut.get();
  CHECK(x.pid == spare);
  CHECK(WIFEXITED(x.wait_status));
  const auto doc = c.result_doc();
  REQUIRE(doc["ok"] == true);
  CHECK(doc["value"] == json::array({spare, zygote}));
  // The next one is forked once the spare is taken: a different process, waiting.
  std::vector<pid_t> next;
  CHECK(within(std::chrono::seconds(10), [&] { return (next = children_of(zygote, spare)).size() == 1; }));
  if (next.size() == 1) CHECK(next[0] != spare);
}
