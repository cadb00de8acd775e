// The plan for one execution, carried out with a real child: what the spawn path will do.
#include <doctest/doctest.h>

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "isolation/isolator.hpp"
#include "sandbox_child.hpp"
#include "support/temp_dir.hpp"

using namespace execd::isolation;
using execd::test::run_child;

TEST_CASE("process level: cgroup joined, rlimits and no_new_privs set in the child") {
  execd::test::TempDir base;
  Isolator iso(Isolator::Options{{}, "/usr/bin/bwrap", base.str(), {}});
  Limits l;
  l.level = Level::process;
  l.set(Limit::memory_mb, 64);
  l.set(Limit::open_files, 77);
  l.set(Limit::cpu_time_s, 5);
  l.set(Limit::output_bytes, 1000);
  auto plan = iso.prepare(l, {{"/bin/sh", "-c", "ulimit -n; ulimit -t; grep NoNewPrivs /proc/self/status; cat /proc/self/cgroup"},
                              {"PATH=/usr/bin:/bin"}, "", "run-a", {}});
  REQUIRE(plan.ok());
  REQUIRE(plan->cgroup != nullptr);
  CHECK(plan->max_output_bytes == 1000u);
  auto [status, out] = run_child(plan->child, plan->argv, plan->env);
  INFO(out);
  CHECK(WIFEXITED(status));
  CHECK(out.find("77\n5\n") == 0);
  CHECK(out.find("NoNewPrivs:\t1") != std::string::npos);
  CHECK(out.find("/run-a") != std::string::npos);
  const std::string mem_dir = plan->cgroup->dir("memory");
  CHECK(read_cgroup_number(mem_dir + "/memory.limit_in_bytes") == (64u << 20));
  CHECK_FALSE(plan->limit_hit(status).has_value());
  plan->finish();
  // The emptied group is removed by the pool's thread, off the caller's path.
  REQUIRE(iso.cgroup_pool() != nullptr);
  CHECK(iso.cgroup_pool()->settle(std::chrono::seconds(10)));
  struct stat st {};
  CHECK(::stat(mem_dir.c_str(), &st) != 0);
}

TEST_CASE("namespace level: bwrap argv, fresh workspace removed after, limits inside") {
  execd::test::TempDir base;
  Isolator iso(Isolator::Options{{}, "/usr/bin/bwrap", base.str(), {}});
  Limits l;
  l.level = Level::namespace_;
  l.set(Limit::processes, 20);
  auto plan = iso.prepare(l, {{"/bin/sh", "-c", "pwd; echo x > f && echo wrote; cat /proc/self/cgroup"},
                              {"PATH=/usr/bin:/bin"}, "", "run-b", {}});
  REQUIRE(plan.ok());
  CHECK(plan->argv.front() == "/usr/bin/bwrap");
  CHECK(plan->env.empty());
  REQUIRE_FALSE(plan->workspace.empty());
  auto [status, out] = run_child(plan->child, plan->argv, plan->env);
  INFO(out);
  CHECK(out.find(plan->workspace + "\nwrote\n") == 0);
  const std::string ws = plan->workspace;
  struct stat st {};
  CHECK(::stat((ws + "/f").c_str(), &st) == 0);
  CHECK(read_cgroup_number(plan->cgroup->dir("pids") + "/pids.max") == 20u);
  plan->finish();
  // Removed by the pool's thread, off the caller's path.
  REQUIRE(iso.cgroup_pool() != nullptr);
  CHECK(iso.cgroup_pool()->settle(std::chrono::seconds(10)));
  CHECK(::stat(ws.c_str(), &st) != 0);
}

TEST_CASE("prepare refuses what check refuses, and a disk limit with a cwd") {
  execd::test::TempDir base;
  Isolator iso(Isolator::Options{{}, "/usr/bin/bwrap", base.str(), {}});
  Limits l;
  l.network = false;
  auto r = iso.prepare(l, {{"/bin/true"}, {}, "", "x", {}});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("network") != std::string::npos);
  l.level = Level::namespace_;
  l.set(Limit::disk_mb, 5);
  r = iso.prepare(l, {{"/bin/true"}, {}, base.str(), "y", {}});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("cwd") != std::string::npos);
}
