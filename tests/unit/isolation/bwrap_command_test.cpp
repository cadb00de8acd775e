// Runs the built bwrap argv for real: each property of the namespace level is observed
// from inside a sandbox.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "isolation/bwrap_command.hpp"
#include "sandbox_child.hpp"
#include "support/temp_dir.hpp"

using namespace execd::isolation;
using execd::test::run_child;

namespace {

std::vector<std::string> own_environment() {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
  return env;
}

/// Runs `script` with sh in a sandbox; bwrap itself gets the test's whole environment.
std::pair<int, std::string> in_sandbox(BwrapCommand::Options o, const std::string& script) {
  if (o.env.empty()) o.env = {"PATH=/usr/bin:/bin", "HOME=" + o.workspace};
  auto argv = BwrapCommand::build(o, {"/bin/sh", "-c", script}, SystemLayout::host());
  REQUIRE(argv.ok());
  return run_child({}, *argv, own_environment());
}

int exit_code(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : -1; }

struct Listener {
  int fd = -1;
  int port = 0;
  Listener() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd, 16) == 0);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~Listener() { ::close(fd); }
};

std::string connect_script(int port) {
  return "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", " + std::to_string(port) +
         "), 2)' 2>/dev/null && echo connected || echo refused";
}

}  // namespace

TEST_CASE("the argv has every namespace, read-only system dirs and the workspace") {
  execd::test::TempDir ws;
  BwrapCommand::Options o;
  o.workspace = ws.str();
  o.env = {"A=1"};
  auto argv = BwrapCommand::build(o, {"/bin/true"}, SystemLayout::host());
  REQUIRE(argv.ok());
  std::string joined;
  for (const auto& a : *argv) joined += a + " ";
  for (const char* must : {"--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net",
                           "--ro-bind /usr /usr", "--dev /dev", "--proc /proc", "--tmpfs /tmp", "--cap-drop ALL",
                           "--die-with-parent", "--new-session", "--clearenv", "--setenv A 1"}) {
    CHECK_MESSAGE(joined.find(must) != std::string::npos, must);
  }
  CHECK(joined.find("--bind " + ws.str() + " " + ws.str()) != std::string::npos);
  CHECK(argv->back() == "/bin/true");
  o.network = true;
  auto with_net = BwrapCommand::build(o, {"/bin/true"}, SystemLayout::host());
  REQUIRE(with_net.ok());
  for (const auto& a : *with_net) CHECK(a != "--unshare-net");
  // A PTY session's shell keeps the terminal it was given: no new session inside.
  o.new_session = false;
  auto keeps_tty = BwrapCommand::build(o, {"/bin/true"}, SystemLayout::host());
  REQUIRE(keeps_tty.ok());
  for (const auto& a : *keeps_tty) CHECK(a != "--new-session");
  o.new_session = true;

  o.workspace = "relative";
  CHECK(BwrapCommand::build(o, {"/bin/true"}, SystemLayout::host()).error().code ==
        execd::core::Errc::invalid_argument);
  o.workspace = ws.str();
  CHECK_FALSE(BwrapCommand::build(o, {}, SystemLayout::host()).ok());
  o.env = {"NOEQUALS"};
  CHECK_FALSE(BwrapCommand::build(o, {"/bin/true"}, SystemLayout::host()).ok());
}

TEST_CASE("inside: system read-only, workspace writable, own /proc, no daemon environment") {
  REQUIRE(::access("/usr/bin/bwrap", X_OK) == 0);
  execd::test::TempDir ws;
  ::setenv("EXECD_H6_DAEMON_SECRET", "s3cret", 1);
  BwrapCommand::Options o;
  o.workspace = ws.str();
  auto [status, out] = in_sandbox(o,
                                  "touch /usr/x 2>/dev/null && echo usr-writable;"
                                  "touch /etc/x 2>/dev/null && echo etc-writable;"
                                  "echo hi > ws.txt && echo ws-ok;"
                                  "echo tmp > /tmp/execd-h6-private-check && echo tmp-ok;"
                                  "env | grep -c EXECD_H6_DAEMON_SECRET;"
                                  "cat /etc/shadow 2>/dev/null | wc -c;"
                                  "echo procs=$(ls /proc | grep -c '^[0-9]')");
  ::unsetenv("EXECD_H6_DAEMON_SECRET");
  INFO(out);
  CHECK(exit_code(status) == 0);
  CHECK(out.find("usr-writable") == std::string::npos);
  CHECK(out.find("etc-writable") == std::string::npos);
  CHECK(out.find("ws-ok") != std::string::npos);
  CHECK(out.find("tmp-ok") != std::string::npos);
  // grep -c prints 0 when the variable is absent
  CHECK(out.find("\n0\n0\n") != std::string::npos);
  std::ifstream written(ws.str() + "/ws.txt");
  std::string line;
  std::getline(written, line);
  CHECK(line == "hi");
  // The workspace's writes land on the host; the private /tmp's do not.
  struct stat st {};
  CHECK(::stat("/tmp/execd-h6-private-check", &st) != 0);
  // bwrap (pid 1), sh, and the ls/grep pipeline: nothing of the host.
  const auto p = out.find("procs=");
  REQUIRE(p != std::string::npos);
  CHECK(std::stoi(out.substr(p + 6)) <= 5);
}

TEST_CASE("network off: the host's loopback listener is unreachable; on: it connects") {
  execd::test::TempDir ws;
  Listener listener;
  BwrapCommand::Options o;
  o.workspace = ws.str();
  {
    auto [status, out] = in_sandbox(o, connect_script(listener.port));
    CHECK(out == "refused\n");
  }
  o.network = true;
  {
    auto [status, out] = in_sandbox(o, connect_script(listener.port));
    CHECK(out == "connected\n");
  }
}

TEST_CASE("disk_limit: the workspace is a tmpfs of that size") {
  REQUIRE(SystemLayout::host().tmpfs_size_supported);
  execd::test::TempDir ws;
  BwrapCommand::Options o;
  o.workspace = ws.str();
  o.workspace_tmpfs_bytes = 1 << 20;
  auto [status, out] = in_sandbox(o,
                                  "dd if=/dev/zero of=big bs=64k count=64 2>/dev/null && echo fit || echo full;"
                                  "dd if=/dev/zero of=small bs=64k count=4 2>/dev/null; ls");
  INFO(out);
  CHECK(out.find("full") != std::string::npos);
  // Nothing reached the host directory.
  struct stat st {};
  CHECK(::stat((ws.str() + "/small").c_str(), &st) != 0);
}
