// DockerHostFirewall against the real iptables, in a network namespace this test makes on
// a thread of its own (unshare(CLONE_NEWNET) moves only that thread and the programs it
// starts), so the host's firewall is never touched.
#include "gateway/backends/docker_host_firewall.hpp"

#include <doctest/doctest.h>
#include <sched.h>
#include <stdio.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <string>
#include <thread>

using execd::gateway::DockerHostFirewall;

namespace {

std::string output_of(const std::string& cmd) {
  std::string out;
  FILE* f = ::popen(cmd.c_str(), "r");
  if (f == nullptr) return out;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
  ::pclose(f);
  return out;
}

size_t count_of(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("bridge names: the exd prefix, 15 characters, one per sandbox id, stable") {
  const std::string a = DockerHostFirewall::sandbox_bridge_name("0b0c92ff348c47a69e9445650ce17643");
  CHECK(a.size() == 15);  // IFNAMSIZ - 1
  CHECK(a.rfind("exd", 0) == 0);
  CHECK(a == DockerHostFirewall::sandbox_bridge_name("0b0c92ff348c47a69e9445650ce17643"));
  std::set<std::string> names;
  for (int i = 0; i < 1000; ++i) names.insert(DockerHostFirewall::sandbox_bridge_name("sandbox-" + std::to_string(i)));
  CHECK(names.size() == 1000);
}

TEST_CASE("ensure(): one REJECT rule for new connections from exd+ bridges in INPUT, made once") {
  std::string error;
  std::string before;
  std::string after;
  bool first_ok = false;
  bool second_ok = false;
  std::thread in_namespace([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      error = std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno);
      return;
    }
    before = output_of("iptables -w 5 -S INPUT 2>&1");
    auto first = DockerHostFirewall::ensure();
    first_ok = first.ok();
    if (!first) error = first.error().message;
    second_ok = DockerHostFirewall::ensure().ok();  // finds it: no second copy
    after = output_of("iptables -w 5 -S INPUT 2>&1");
  });
  in_namespace.join();
  REQUIRE_MESSAGE(error.empty(), error);
  CHECK(first_ok);
  CHECK(second_ok);
  CHECK(before.find("exd+") == std::string::npos);
  CHECK(count_of(after, "-A INPUT -i exd+ -m conntrack --ctstate NEW -j REJECT") == 1);
  // The host's INPUT chain has no such rule from this test.
  CHECK(output_of("iptables -w 5 -S INPUT 2>&1").find("exd+") == std::string::npos);
}

TEST_CASE("ensure(): a missing iptables is an unavailable error naming the command") {
  auto r = DockerHostFirewall::ensure("/nonexistent/iptables");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == execd::core::Errc::unavailable);
  CHECK(r.error().message.find("/nonexistent/iptables") != std::string::npos);
}
