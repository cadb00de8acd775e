// spawn() and signal_group() against real children: process groups, grandchildren,
// stdin, errors that name the failing step.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "process/pipe_write.hpp"
#include "process/proc_table.hpp"
#include "process/spawn.hpp"

using namespace execd;

namespace {

std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 10000) <= 0) break;
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

process::SpawnOptions shell(const std::string& script) {
  process::SpawnOptions o;
  o.argv = {"/bin/sh", "-c", script};
  o.env = {"PATH=/usr/bin:/bin"};
  return o;
}

}  // namespace

TEST_CASE("the child leads its own process group and reads /dev/null by default") {
  auto child = process::spawn(shell("echo $$ $(ps -o pgid= -p $$) $(readlink /proc/self/fd/0)"));
  REQUIRE(child);
  const std::string out = read_all(child->stdout_fd.get());
  const std::string pid = std::to_string(child->pid);
  CHECK(out == pid + " " + pid + " /dev/null\n");
  int status = 0;
  waitpid(child->pid, &status, 0);
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("pass_fds: the given descriptors become 3, 4, ... and nothing else is inherited") {
  int a[2];
  int b[2];
  REQUIRE(pipe2(a, O_CLOEXEC) == 0);
  REQUIRE(pipe2(b, O_CLOEXEC) == 0);
  // Handed in reverse numbering order, so a source may sit where a target goes.
  auto o = shell("echo to-three >&3; echo to-four >&4; ls /proc/self/fd | sort -n | tr '\\n' ' '");
  o.pass_fds = {b[1], a[1]};
  auto child = process::spawn(o);
  REQUIRE(child);
  close(a[1]);
  close(b[1]);
  CHECK(read_all(b[0]) == "to-three\n");
  CHECK(read_all(a[0]) == "to-four\n");
  // 0-2, 3 and 4, and the descriptor ls opened to list the directory.
  CHECK(read_all(child->stdout_fd.get()) == "0 1 2 3 4 5 ");
  close(a[0]);
  close(b[0]);
  int status = 0;
  waitpid(child->pid, &status, 0);
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("signal_group reaches a grandchild") {
  auto child = process::spawn(shell("sleep 1010 & echo $!; wait"));
  REQUIRE(child);
  std::string line;
  char c = 0;
  for (;;) {
    pollfd p{child->stdout_fd.get(), POLLIN, 0};
    REQUIRE(poll(&p, 1, 5000) == 1);
    REQUIRE(read(child->stdout_fd.get(), &c, 1) == 1);
    if (c == '\n') break;
    line += c;
  }
  const pid_t grandchild = std::stoi(line);
  CHECK(process::group_members(child->pid).size() == 2);
  CHECK(process::signal_group(child->pid, SIGKILL));
  int status = 0;
  waitpid(child->pid, &status, 0);
  CHECK(WIFSIGNALED(status));
  // The grandchild went too (it is not our child, so poll /proc until it is gone).
  for (int i = 0; i < 200 && kill(grandchild, 0) == 0; ++i) {
    auto p = process::read_process(grandchild);
    if (p && p->state == 'Z') break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  auto p = process::read_process(grandchild);
  CHECK((!p || p->state == 'Z'));
}

TEST_CASE("stdin pipe and merged stderr") {
  auto o = shell("cat; echo err >&2");
  o.stdin_pipe = true;
  o.merge_stderr = true;
  auto child = process::spawn(o);
  REQUIRE(child);
  size_t written = 0;
  REQUIRE(process::write_all(child->stdin_fd.get(), "fed\n", std::chrono::seconds(5), written));
  CHECK(written == 4);
  child->stdin_fd.reset();
  CHECK(read_all(child->stdout_fd.get()) == "fed\nerr\n");
  waitpid(child->pid, nullptr, 0);
}

TEST_CASE("failures name the step instead of a child exiting 127") {
  auto o = shell("true");
  o.cwd = "/no/such/dir";
  auto r = process::spawn(o);
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("changing directory to /no/such/dir") != std::string::npos);
  process::SpawnOptions missing;
  missing.argv = {"no-such-binary-xyz"};
  missing.env = {"PATH=/usr/bin:/bin"};
  r = process::spawn(missing);
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("exec of no-such-binary-xyz") != std::string::npos);
}

TEST_CASE("parse_signal takes names with or without SIG, and numbers") {
  CHECK(process::parse_signal("TERM").value() == SIGTERM);
  CHECK(process::parse_signal("sigkill").value() == SIGKILL);
  CHECK(process::parse_signal("2").value() == SIGINT);
  CHECK_FALSE(process::parse_signal("NOPE"));
  CHECK_FALSE(process::parse_signal("999"));
}

TEST_CASE("the child gets only its stdio, whatever the parent left open without CLOEXEC") {
  int leaked[2];
  REQUIRE(pipe(leaked) == 0);  // no O_CLOEXEC: as a library or a careless parent would
  // ls lists its own: 0-2 and the directory it reads, which takes the lowest free number.
  auto child = process::spawn(shell("exec ls /proc/self/fd"));
  REQUIRE(child);
  CHECK(read_all(child->stdout_fd.get()) == "0\n1\n2\n3\n");
  waitpid(child->pid, nullptr, 0);
  close(leaked[0]);
  close(leaked[1]);
}

TEST_CASE("the child dies with the process that started it, even on SIGKILL") {
  int report[2];
  REQUIRE(pipe2(report, O_CLOEXEC) == 0);
  const pid_t parent = fork();
  REQUIRE(parent >= 0);
  if (parent == 0) {
    auto child = process::spawn(shell("exec sleep 1000"));
    const pid_t pid = child ? child->pid : -1;
    if (write(report[1], &pid, sizeof pid) != sizeof pid) _exit(1);
    pause();  // killed below
    _exit(0);
  }
  close(report[1]);
  pid_t grandchild = -1;
  REQUIRE(read(report[0], &grandchild, sizeof grandchild) == sizeof grandchild);
  close(report[0]);
  REQUIRE(grandchild > 0);
  kill(parent, SIGKILL);
  waitpid(parent, nullptr, 0);
  // Re-parented to init or a subreaper, then killed: gone or a zombie within a second.
  bool dead = false;
  for (int i = 0; i < 100 && !dead; ++i) {
    auto info = process::read_identity(grandchild);
    dead = !info || info->state == 'Z';
    if (!dead) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(dead);
  if (!dead) kill(grandchild, SIGKILL);
}

namespace {

// A child setup as isolation's ChildSteps is one: raw syscalls only.
int lower_nofile(const void* arg, const char** step) noexcept {
  const rlimit lim{*static_cast<const rlim_t*>(arg), *static_cast<const rlim_t*>(arg)};
  if (setrlimit(RLIMIT_NOFILE, &lim) != 0) {
    *step = "test: lowering RLIMIT_NOFILE";
    return errno;
  }
  return 0;
}

int refuse(const void*, const char** step) noexcept {
  *step = "test: refusing to start";
  return EACCES;
}

}  // namespace

TEST_CASE("child_setup runs in the child before exec, and its failure names its step") {
  static const rlim_t kLimit = 77;
  auto o = shell("ulimit -n");
  o.child_setup = &lower_nofile;
  o.child_setup_arg = &kLimit;
  auto child = process::spawn(o);
  REQUIRE(child.ok());
  CHECK(read_all(child->stdout_fd.get()) == "77\n");
  waitpid(child->pid, nullptr, 0);
  rlimit mine{};
  getrlimit(RLIMIT_NOFILE, &mine);
  CHECK(mine.rlim_cur != kLimit);  // the daemon's own limit is untouched

  auto bad = shell("echo never");
  bad.child_setup = &refuse;
  auto failed = process::spawn(bad);
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.error().message.find("test: refusing to start") != std::string::npos);
}
