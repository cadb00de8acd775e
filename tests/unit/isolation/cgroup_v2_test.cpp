// The cgroup v2 code paths on this host. It is v1 hybrid: the memory, pids and cpu
// controllers are bound to v1, and the unified (v2) hierarchy has none. What v2 does
// without controllers still runs there, for real: the parent and its groups, joining
// through cgroup.procs, cgroup.freeze, cgroup.kill, removal. The limits themselves on v2
// have not run here (docs/ARCHITECTURE.md, "Isolation").
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "isolation/cgroup_root.hpp"
#include "isolation/launch_plan.hpp"
#include "sandbox_child.hpp"

using namespace execd::isolation;
using execd::test::is_running;
using execd::test::start_child;

namespace {

bool exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}

/// This process's mountinfo lines for cgroup2 only, in a file of their own: CgroupRoot
/// then sees a v2-only host.
std::string v2_only_mountinfo() {
  std::ifstream in("/proc/self/mountinfo");
  std::string kept;
  for (std::string line; std::getline(in, line);) {
    if (line.find(" - cgroup2 ") != std::string::npos) kept += line + "\n";
  }
  REQUIRE_MESSAGE(!kept.empty(), "no cgroup2 mount on this host");
  const std::string path = "/tmp/execd-v2-mountinfo-" + std::to_string(::getpid());
  std::ofstream(path) << kept;
  return path;
}

}  // namespace

TEST_CASE("cgroup v2 without controllers: groups, joining, freezing, cgroup.kill of a setsid escapee, removal") {
  const std::string mountinfo = v2_only_mountinfo();
  CgroupRoot::Options options;
  options.mountinfo = mountinfo;
  options.name = "execd-v2test-" + std::to_string(::getpid());
  auto root = CgroupRoot::open(options);
  ::unlink(mountinfo.c_str());
  INFO("reason: ", root->reason());
  REQUIRE(root->version() == 2);
  REQUIRE(root->writable("freezer"));  // cgroup.freeze is core v2, no controller needed
  const std::string parent = root->parent_dirs().at("");
  CHECK(exists(parent + "/cgroup.procs"));

  auto group = root->create("g");
  REQUIRE(group.ok());
  Cgroup& g = **group;
  CHECK(g.version() == 2);
  const std::string dir = g.dir("");
  CHECK(dir == parent + "/g");

  ChildSteps steps;
  steps.cgroup_procs_fds = g.procs_fds().value();
  const std::string pidfile = "/tmp/execd-v2-escapee-" + std::to_string(::getpid());
  ::unlink(pidfile.c_str());
  const pid_t child = start_child(
      steps,
      {"/bin/sh", "-c",
       "setsid sh -c 'echo $$ > " + pidfile + ".tmp; mv " + pidfile + ".tmp " + pidfile +
           "; exec sleep 1000' >/dev/null 2>&1 & exec sleep 1000"},
      {"PATH=/usr/bin:/bin"});
  pid_t escaped = -1;
  for (int i = 0; i < 500 && escaped < 0; ++i) {
    std::ifstream in(pidfile);
    long p = 0;
    if (in >> p && p > 0) escaped = static_cast<pid_t>(p);
    if (escaped < 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::unlink(pidfile.c_str());
  REQUIRE(escaped > 0);
  CHECK(::getsid(escaped) == escaped);  // its own session: no process-group kill reaches it
  const auto members = g.pids();
  CHECK(std::find(members.begin(), members.end(), child) != members.end());
  CHECK(std::find(members.begin(), members.end(), escaped) != members.end());

  REQUIRE(g.freeze(true).ok());
  CHECK(g.is_frozen());
  REQUIRE(g.freeze(false).ok());
  CHECK_FALSE(g.is_frozen());

  // cgroup.kill (kernel 5.14+) ends both in one write; the escapee is init's to reap.
  REQUIRE(g.kill_all().ok());
  int status = 0;
  CHECK(::waitpid(child, &status, 0) == child);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
  for (int i = 0; i < 200 && is_running(escaped); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK_FALSE(is_running(escaped));
  CHECK(g.pids().empty());
  REQUIRE(g.remove().ok());
  CHECK_FALSE(exists(dir));

  root.reset();
  CHECK_FALSE(exists(parent));
}
