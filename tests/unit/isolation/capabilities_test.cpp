#include <doctest/doctest.h>

#include <unistd.h>

#include "isolation/capabilities.hpp"
#include "isolation/cgroup_root.hpp"

using namespace execd::isolation;
using execd::core::Errc;

namespace {

Capabilities all_supported() {
  Capabilities c;
  for (auto& l : c.levels) l.supported = true;
  for (auto& l : c.limits) l = {true, Mechanism::cgroup_v1, ""};
  return c;
}

}  // namespace

TEST_CASE("probe on this host: bwrap works, memory and pids by cgroup, reasons for the rest") {
  auto root = CgroupRoot::open();
  const Capabilities c = probe(*root);
  CHECK(c.level(Level::none).supported);
  CHECK(c.level(Level::process).supported);
  INFO(c.level(Level::namespace_).reason);
  CHECK(c.level(Level::namespace_).supported);
  CHECK(c.bwrap_path == "/usr/bin/bwrap");
  REQUIRE(::geteuid() == 0);  // the tests run as root here; cgroups are writable
  CHECK(c.cgroup_version != 0);
  CHECK(c.limit(Limit::memory_mb).mechanism == (c.cgroup_version == 2 ? Mechanism::cgroup_v2 : Mechanism::cgroup_v1));
  CHECK(c.limit(Limit::processes).supported);
  CHECK(c.limit(Limit::cpu_time_s).mechanism == Mechanism::rlimit);
  CHECK(c.limit(Limit::cpu_time_s).reason.find("own budget") != std::string::npos);
  CHECK(c.limit(Limit::disk_mb).mechanism == Mechanism::tmpfs);
}

TEST_CASE("probe names what is missing: no bwrap, no cgroups") {
  CgroupRoot::Options none;
  none.mountinfo = "/nonexistent";
  auto root = CgroupRoot::open(none);
  CHECK(root->version() == 0);
  CHECK(root->reason().find("no cgroup") != std::string::npos);
  const Capabilities c = probe(*root, "/nonexistent/bwrap");
  CHECK_FALSE(c.level(Level::namespace_).supported);
  CHECK(c.level(Level::namespace_).reason.find("not found") != std::string::npos);
  // memory falls back to RLIMIT_AS and says what that does not do
  CHECK(c.limit(Limit::memory_mb).mechanism == Mechanism::rlimit);
  CHECK(c.limit(Limit::memory_mb).reason.find("address space") != std::string::npos);
  if (::geteuid() == 0) {
    CHECK_FALSE(c.limit(Limit::processes).supported);
    CHECK(c.limit(Limit::processes).reason.find("not enforced for root") != std::string::npos);
  }
  CHECK_FALSE(c.limit(Limit::disk_mb).supported);

  Limits l;
  l.level = Level::namespace_;
  auto r = check(l, c);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::invalid_argument);
  CHECK(r.error().message.find("'isolation'") != std::string::npos);
  CHECK(r.error().message.find("not found") != std::string::npos);
}

TEST_CASE("check refuses what cannot hold, naming the field") {
  Capabilities c = all_supported();
  Limits l;
  CHECK(check(l, c).ok());
  l.network = false;
  auto r = check(l, c);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("'network'") != std::string::npos);
  l.level = Level::namespace_;
  CHECK(check(l, c).ok());

  Limits disk;
  disk.set(Limit::disk_mb, 10);
  r = check(disk, c);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("'disk_limit_mb'") != std::string::npos);

  Limits procs;
  procs.set(Limit::processes, 10);
  c.limits[static_cast<size_t>(Limit::processes)] = {false, Mechanism::none, "no pids cgroup"};
  r = check(procs, c);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("'max_processes'") != std::string::npos);
  CHECK(r.error().message.find("no pids cgroup") != std::string::npos);
}
