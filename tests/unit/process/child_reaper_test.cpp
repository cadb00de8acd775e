// ChildReaper against real children: spawning on a thread of its own, so a child
// outlives the (request) thread that asked for it but not the daemon.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "process/child_reaper.hpp"
#include "process/proc_table.hpp"
#include "support/temp_dir.hpp"

using namespace execd;

namespace {

bool alive(pid_t pid) {
  auto id = process::read_identity(pid);
  return id && id->state != 'Z';
}

process::SpawnOptions sleeper() {
  process::SpawnOptions o;
  o.argv = {"/bin/sh", "-c", "exec sleep 1000"};
  o.env = {"PATH=/usr/bin:/bin"};
  return o;
}

}  // namespace

TEST_CASE("a child outlives the thread that asked for it, and goes with the reaper") {
  auto reactor = std::make_shared<process::Reactor>();
  auto reaper = std::make_unique<process::ChildReaper>(reactor);
  pid_t pid = -1;
  // Like an HTTP worker thread that exits after 5 s idle.
  std::thread request([&] {
    auto child = reaper->spawn(sleeper());
    REQUIRE(child);
    pid = child->pid;
  });
  request.join();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(alive(pid));
  // The spawner thread ends with the reaper: its children get their parent-death signal.
  reaper.reset();
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
}

TEST_CASE("every child's session is on record until its leader is reaped and its group is empty") {
  execd::test::TempDir dir;
  const std::string ledger = dir.str() + "/sessions";
  auto reactor = std::make_shared<process::Reactor>();
  process::ChildReaper reaper(reactor, ledger);
  auto child = reaper.spawn(sleeper());
  REQUIRE(child);
  kill(child->pid, SIGKILL);
  REQUIRE(waitpid(child->pid, nullptr, 0) == child->pid);
  reaper.disown(child->pid);
  // A dead daemon's ledger with that child in it would end nothing now: the leader is gone
  // and no process is left in its session.
  CHECK(process::SessionLedger::end_recorded(ledger) == 0);
}
