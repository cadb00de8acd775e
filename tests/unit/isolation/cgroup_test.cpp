// Against the real cgroup fs (this host: v1 hybrid, as root). Every test ends by checking
// that nothing is left: no process, no directory.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <thread>

#include "isolation/cgroup_root.hpp"
#include "isolation/launch_plan.hpp"
#include "sandbox_child.hpp"

using namespace execd::isolation;
using execd::test::is_running;
using execd::test::run_child;
using execd::test::start_child;

namespace {

bool exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}

ChildSteps join(Cgroup& g) {
  ChildSteps s;
  s.cgroup_procs_fds = g.procs_fds().value();
  return s;
}

}  // namespace

TEST_CASE("the daemon's cgroup root has memory and pids writable here") {
  auto root = CgroupRoot::open();
  INFO(root->reason());
  REQUIRE(root->version() != 0);
  CHECK(root->writable("memory"));
  CHECK(root->writable("pids"));
  for (const auto& [controller, dir] : root->parent_dirs()) CHECK(exists(dir));
  const auto dirs = root->parent_dirs();
  root.reset();
  for (const auto& [controller, dir] : dirs) CHECK_FALSE(exists(dir));
}

TEST_CASE("a fork storm is held at max_processes and fully cleaned up") {
  auto root = CgroupRoot::open();
  REQUIRE(root->writable("pids"));
  auto group = root->create("forks");
  REQUIRE(group.ok());
  Cgroup& g = **group;
  REQUIRE(g.set_pids_limit(50).ok());
  // 200 background sleeps; past 50 tasks the forks fail (sh reports and goes on).
  const pid_t pid = start_child(join(g), {"/bin/sh", "-c", "for i in $(seq 200); do sleep 1000 & done; wait"},
                                {"PATH=/usr/bin:/bin"}, ::open("/dev/null", O_WRONLY | O_CLOEXEC));
  uint64_t peak = 0;
  for (int i = 0; i < 300; ++i) {
    const auto u = g.usage();
    peak = std::max(peak, u.pids_current.value_or(0));
    if (u.pids_limit_hits > 0 && u.pids_current.value_or(0) >= 50) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const auto u = g.usage();
  CHECK(u.pids_limit_hits > 0);
  CHECK(peak <= 50);
  CHECK(u.pids_current.value_or(0) <= 50);
  const auto members = g.pids();
  CHECK(members.size() >= 40);
  REQUIRE(g.kill_all().ok());
  int status = 0;
  ::waitpid(pid, &status, 0);
  CHECK(g.pids().empty());
  for (pid_t p : members) CHECK_FALSE(is_running(p));
  const std::string dir = g.dir("pids");
  REQUIRE(g.remove().ok());
  CHECK_FALSE(exists(dir));
}

TEST_CASE("1 GiB under a 128 MiB limit is OOM-killed and reported as the memory limit") {
  auto root = CgroupRoot::open();
  REQUIRE(root->writable("memory"));
  LaunchPlan plan;
  plan.limits.set(Limit::memory_mb, 128);
  auto group = root->create("oom");
  REQUIRE(group.ok());
  plan.cgroup = std::move(group).value();
  REQUIRE(plan.cgroup->set_memory_limit(128ull << 20).ok());
  // A grandchild does the allocating: the limit covers the whole tree.
  auto [status, out] = run_child(join(*plan.cgroup),
                                 {"/bin/sh", "-c", "python3 -c 'bytearray(1<<30)'; echo exit=$?"});
  CHECK(out.find("exit=137") != std::string::npos);
  CHECK(plan.cgroup->oom_killed());
  const auto usage = plan.cgroup->usage();
  CHECK(usage.memory_peak_bytes.value_or(0) <= (128ull << 20));
  CHECK(usage.memory_peak_bytes.value_or(0) > (64ull << 20));
  CHECK(usage.cpu_usage_ns.value_or(0) > 0);
  auto hit = plan.limit_hit(status);
  REQUIRE(hit.has_value());
  CHECK(hit->limit == Limit::memory_mb);
  CHECK(hit->value == 128);
  CHECK(hit->message.find("OOM") != std::string::npos);
  const std::string dir = plan.cgroup->dir("memory");
  plan.finish();
  CHECK_FALSE(exists(dir));
}

TEST_CASE("a setsid grandchild is found and killed through the cgroup") {
  auto root = CgroupRoot::open();
  auto group = root->create("escape");
  REQUIRE(group.ok());
  Cgroup& g = **group;
  // The escapee writes its own pid once it is in its new session.
  const std::string pidfile = "/tmp/execd-h6-escapee-" + std::to_string(::getpid());
  ::unlink(pidfile.c_str());
  auto [status, out] = run_child(
      join(g), {"/bin/sh", "-c",
                "setsid sh -c 'echo $$ > " + pidfile + ".tmp; mv " + pidfile + ".tmp " + pidfile +
                    "; exec sleep 1000' >/dev/null 2>&1 & while [ ! -s " + pidfile + " ]; do sleep 0.01; done; cat " +
                    pidfile});
  ::unlink(pidfile.c_str());
  CHECK(WIFEXITED(status));
  const pid_t escaped = static_cast<pid_t>(std::stol(out));
  REQUIRE(is_running(escaped));
  // Its own session, and its parent is gone: no process-group kill can reach it.
  CHECK(::getsid(escaped) == escaped);
  const auto members = g.pids();
  CHECK(std::find(members.begin(), members.end(), escaped) != members.end());
  REQUIRE(g.kill_all().ok());
  for (int i = 0; i < 100 && is_running(escaped); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK_FALSE(is_running(escaped));
  REQUIRE(g.remove().ok());
}

TEST_CASE("a dead daemon's cgroups are killed and removed by the next daemon's sweep") {
  std::map<std::string, std::string> grandparents;
  {
    auto probe = CgroupRoot::open();
    for (const auto& [controller, dir] : probe->parent_dirs()) grandparents[controller] = dir.substr(0, dir.rfind('/'));
  }
  REQUIRE_FALSE(grandparents.empty());
  // pid 2^22 + 1 is above pid_max: that daemon cannot be running.
  const std::string stale = "execd-4194305-12345";
  CHECK(CgroupRoot::is_stale_parent(stale));
  CHECK_FALSE(CgroupRoot::is_stale_parent(CgroupRoot::parent_name_for(::getpid())));
  ChildSteps steps;
  std::vector<int> fds;
  for (const auto& [controller, gp] : grandparents) {
    REQUIRE(::mkdir((gp + "/" + stale).c_str(), 0755) == 0);
    REQUIRE(::mkdir((gp + "/" + stale + "/run1").c_str(), 0755) == 0);
    const int fd = ::open((gp + "/" + stale + "/run1/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    fds.push_back(fd);
  }
  steps.cgroup_procs_fds = fds;
  auto [status, out] = run_child(steps, {"/bin/sh", "-c", "setsid sleep 1000 >/dev/null 2>&1 & echo $!"});
  for (int fd : fds) ::close(fd);
  const pid_t left = static_cast<pid_t>(std::stol(out));
  REQUIRE(is_running(left));

  auto root = CgroupRoot::open();  // the "next daemon"
  for (int i = 0; i < 100 && is_running(left); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK_FALSE(is_running(left));
  for (const auto& [controller, gp] : grandparents) CHECK_FALSE(exists(gp + "/" + stale));
}

TEST_CASE("kill_all ends a frozen group too: the first round kills without the freezer, then thaws for the kill") {
  auto root = CgroupRoot::open();
  REQUIRE(root->writable("freezer"));
  auto group = root->create("frozen-kill");
  REQUIRE(group.ok());
  Cgroup& g = **group;
  const pid_t pid = start_child(join(g), {"/bin/sleep", "1000"}, {"PATH=/usr/bin:/bin"}, ::open("/dev/null", O_WRONLY | O_CLOEXEC));
  for (int i = 0; i < 500 && g.pids().empty(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  REQUIRE(g.pids() == std::vector<pid_t>{pid});
  REQUIRE(g.freeze(true).ok());
  REQUIRE(g.kill_all(std::chrono::seconds(5), [](const std::vector<pid_t>& killed) {
    for (pid_t p : killed) ::waitpid(p, nullptr, WNOHANG);
  }).ok());
  ::waitpid(pid, nullptr, 0);
  CHECK_FALSE(is_running(pid));
  REQUIRE(g.remove().ok());
}
