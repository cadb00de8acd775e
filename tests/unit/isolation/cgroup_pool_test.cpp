// CgroupPool against the real cgroup fs (this host: v1 hybrid, as root; v2 without
// controllers through a v2-only mountinfo, as cgroup_v2_test does): spares made ahead,
// each used once with only its own execution's limits, removed off the caller's path,
// and nothing left behind when the pool or the daemon's isolation goes, spares included.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <set>
#include <thread>

#include "isolation/cgroup_pool.hpp"
#include "isolation/isolator.hpp"
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

std::set<std::string> children(const std::string& dir) {
  const auto v = child_groups(dir);
  return {v.begin(), v.end()};
}

std::string base(const std::string& path) { return path.substr(path.rfind('/') + 1); }

ChildSteps join(Cgroup& g) {
  ChildSteps s;
  s.cgroup_procs_fds = g.procs_fds().value();
  return s;
}

/// Waits (up to 5 s) for `pid` to have joined `g`: start_child returns before the child
/// has run its steps.
bool joined(const Cgroup& g, pid_t pid) {
  for (int i = 0; i < 1000; ++i) {
    const auto members = g.pids();
    if (std::find(members.begin(), members.end(), pid) != members.end()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

pid_t start_sleeper(Cgroup& g) {
  const pid_t pid =
      start_child(join(g), {"/bin/sleep", "1000"}, {"PATH=/usr/bin:/bin"}, ::open("/dev/null", O_WRONLY | O_CLOEXEC));
  REQUIRE(joined(g, pid));
  return pid;
}

bool gone_within(pid_t pid, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (::waitpid(pid, nullptr, WNOHANG) == pid || !is_running(pid)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

std::shared_ptr<CgroupRoot> open_root(const std::string& tag) {
  CgroupRoot::Options o;
  o.name = "execd-pooltest-" + tag + "-" + std::to_string(::getpid());
  return std::shared_ptr<CgroupRoot>(CgroupRoot::open(o));
}

}  // namespace

TEST_CASE("pool: spares made ahead, each used once, named after its execution, with its limits only") {
  auto root = open_root("once");
  INFO(root->reason());
  REQUIRE(root->version() == 1);
  const std::string memory_parent = root->parent_dirs().at("memory");
  const std::string pids_parent = root->parent_dirs().at("pids");
  CgroupPool pool(root, {2});
  REQUIRE(pool.settle(std::chrono::seconds(5)));
  CHECK(pool.spare_count() == 2);
  const auto spares_before = children(pids_parent);
  CHECK(spares_before.size() == 2);
  for (const auto& n : spares_before) CHECK(n.rfind("spare-", 0) == 0);

  // The first execution: limits of its own, a process in it.
  auto a = pool.take("exec-a");
  REQUIRE(a.ok());
  Cgroup& ga = **a;
  CHECK(base(ga.dir("pids")) == "exec-a");  // renamed in every hierarchy
  CHECK(base(ga.dir("memory")) == "exec-a");
  CHECK(exists(pids_parent + "/exec-a"));
  REQUIRE(ga.set_pids_limit(7).ok());
  REQUIRE(ga.set_memory_limit(64u << 20).ok());
  const pid_t pid = start_sleeper(ga);
  CHECK(ga.pids() == std::vector<pid_t>{pid});
  const std::string a_pids_dir = ga.dir("pids");

  // Retired: the caller killed its processes; the rmdir happens on the pool's thread.
  REQUIRE(ga.kill_all().ok());
  CHECK(gone_within(pid, std::chrono::seconds(5)));
  pool.retire(std::move(a).value());
  REQUIRE(pool.settle(std::chrono::seconds(10)));
  CHECK_FALSE(exists(a_pids_dir));
  CHECK(pool.spare_count() == 2);

  // The next execution gets a group nobody used: none of the spares there before exec-a
  // took one is reused under another name, and no limit or task of exec-a is in it.
  const auto spares_after = children(pids_parent);
  CHECK(spares_after.size() == 2);
  auto b = pool.take("exec-b");
  REQUIRE(b.ok());
  Cgroup& gb = **b;
  CHECK(base(gb.dir("pids")) == "exec-b");
  CHECK(read_cgroup_number(gb.dir("pids") + "/pids.max") == UINT64_MAX);
  CHECK(read_cgroup_number(gb.dir("memory") + "/memory.limit_in_bytes").value_or(0) > (uint64_t{1} << 40));
  CHECK(gb.pids().empty());
  CHECK(gb.usage().pids_limit_hits == 0);
  CHECK(gb.usage().oom_kills == 0);
  // Made by the pool's thread after exec-a was taken: its spare name is a new one.
  std::set<std::string> seen = spares_before;
  seen.insert(spares_after.begin(), spares_after.end());
  CHECK(seen.size() >= 3);

  pool.retire(std::move(b).value());
  REQUIRE(pool.settle(std::chrono::seconds(10)));
  CHECK(children(pids_parent).size() == 2);  // the spares, and nothing else
  CHECK(children(memory_parent).size() == 2);
}

TEST_CASE("pool: a plan's finish kills at once and removes after; the pool's end leaves nothing, spares included") {
  auto root = open_root("finish");
  REQUIRE(root->version() == 1);
  const auto parents = root->parent_dirs();
  auto pool = std::make_shared<CgroupPool>(root, CgroupPool::Options{3});
  REQUIRE(pool->settle(std::chrono::seconds(5)));

  LaunchPlan plan;
  plan.cgroup = pool->take("exec-finish").value();
  plan.cgroup_pool = pool;
  const std::string dir = plan.cgroup->dir("pids");
  const pid_t pid = start_sleeper(*plan.cgroup);
  // A second process that left the process group, as `setsid sleep &` does.
  const pid_t escapee = start_child(join(*plan.cgroup), {"/usr/bin/setsid", "/bin/sleep", "1000"}, {"PATH=/usr/bin:/bin"},
                                    ::open("/dev/null", O_WRONLY | O_CLOEXEC));
  REQUIRE(joined(*plan.cgroup, escapee));
  REQUIRE(is_running(pid));
  plan.finish([](const std::vector<pid_t>& killed) {
    for (pid_t p : killed) ::waitpid(p, nullptr, WNOHANG);
  });
  CHECK(plan.cgroup == nullptr);
  // No process outlives finish(): they were killed by it, not by the remover.
  CHECK(gone_within(pid, std::chrono::milliseconds(500)));
  CHECK(gone_within(escapee, std::chrono::milliseconds(500)));
  REQUIRE(pool->settle(std::chrono::seconds(10)));
  CHECK_FALSE(exists(dir));

  // A group in use and one retired but perhaps not yet removed when the pool goes.
  auto busy = pool->take("exec-busy").value();
  const pid_t busy_pid = start_sleeper(*busy);
  auto retired = pool->take("exec-retired").value();
  pool->retire(std::move(retired));
  plan.cgroup_pool.reset();
  pool.reset();
  for (const auto& [controller, parent] : parents) {
    CAPTURE(controller);
    CHECK(children(parent) == std::set<std::string>{"exec-busy"});  // spares and the retired one gone
  }
  busy.reset();  // a Cgroup's own destructor kills and removes
  CHECK(gone_within(busy_pid, std::chrono::seconds(5)));
  root.reset();
  for (const auto& [controller, parent] : parents) CHECK_FALSE(exists(parent));
}

TEST_CASE("pool: the daemon's abandon hook (Isolator::remove_cgroups) leaves nothing, spares and running groups alike") {
  Isolator::Options o;
  o.cgroups.name = "execd-pooltest-abandon-" + std::to_string(::getpid());
  o.cgroup_pool_size = 4;
  Isolator iso(o);
  REQUIRE(iso.cgroup_pool() != nullptr);
  REQUIRE(iso.cgroup_pool()->settle(std::chrono::seconds(5)));
  const auto parents = iso.cgroups().parent_dirs();
  Limits l;
  l.level = Level::process;
  l.set(Limit::processes, 20);
  auto plan = iso.prepare(l, {{"/bin/sleep", "1000"}, {"PATH=/usr/bin:/bin"}, "", "c-abandon", {}});
  REQUIRE(plan.ok());
  CHECK(base(plan->cgroup->dir("pids")) == "c-abandon");
  CHECK(read_cgroup_number(plan->cgroup->dir("pids") + "/pids.max") == 20u);
  const pid_t pid = start_child(plan->child, plan->argv, plan->env, ::open("/dev/null", O_WRONLY | O_CLOEXEC));
  REQUIRE(joined(*plan->cgroup, pid));
  CHECK(iso.cgroup_pool()->spare_count() >= 3);

  iso.remove_cgroups();
  CHECK(gone_within(pid, std::chrono::seconds(5)));
  for (const auto& [controller, parent] : parents) {
    CAPTURE(parent);
    CHECK_FALSE(exists(parent));
  }
  // The pool makes nothing after it; the plan's end finds its group gone and says so only.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  for (const auto& [controller, parent] : parents) CHECK_FALSE(exists(parent));
  plan->finish();
}

TEST_CASE("pool on cgroup v2 (no controllers here): spares keep their names, used once, removed after") {
  std::ifstream in("/proc/self/mountinfo");
  std::string kept;
  for (std::string line; std::getline(in, line);) {
    if (line.find(" - cgroup2 ") != std::string::npos) kept += line + "\n";
  }
  REQUIRE_MESSAGE(!kept.empty(), "no cgroup2 mount on this host");
  const std::string mountinfo = "/tmp/execd-pool-v2-mountinfo-" + std::to_string(::getpid());
  std::ofstream(mountinfo) << kept;
  CgroupRoot::Options o;
  o.mountinfo = mountinfo;
  o.name = "execd-pooltest-v2-" + std::to_string(::getpid());
  auto root = std::shared_ptr<CgroupRoot>(CgroupRoot::open(o));
  ::unlink(mountinfo.c_str());
  INFO(root->reason());
  REQUIRE(root->version() == 2);
  const std::string parent = root->parent_dirs().at("");
  {
    CgroupPool pool(root, {2});
    REQUIRE(pool.settle(std::chrono::seconds(5)));
    CHECK(children(parent).size() == 2);
    auto g = pool.take("exec-v2");
    REQUIRE(g.ok());
    CHECK(base((*g)->dir("")).rfind("spare-", 0) == 0);  // v2 cannot rename
    const pid_t pid = start_sleeper(**g);
    CHECK((*g)->pids() == std::vector<pid_t>{pid});
    const std::string dir = (*g)->dir("");
    REQUIRE((*g)->kill_all().ok());
    CHECK(gone_within(pid, std::chrono::seconds(5)));
    pool.retire(std::move(g).value());
    REQUIRE(pool.settle(std::chrono::seconds(10)));
    CHECK_FALSE(exists(dir));
    CHECK(children(parent).size() == 2);
  }
  CHECK(children(parent).empty());
  root.reset();
  CHECK_FALSE(exists(parent));
}
