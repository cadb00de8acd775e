// SessionLedger against real processes: what a dead daemon recorded is ended, whole
// sessions included; a recorded pid now used by another process is spared.
#include <doctest/doctest.h>

#include <signal.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "process/proc_table.hpp"
#include "process/session_ledger.hpp"
#include "process/spawn.hpp"
#include "support/temp_dir.hpp"

using namespace execd;

namespace {

bool alive(pid_t pid) {
  auto id = process::read_identity(pid);
  return id && id->state != 'Z';
}

std::string read_line(int fd) {
  std::string out;
  char c = 0;
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 5000) <= 0 || read(fd, &c, 1) != 1 || c == '\n') break;
    out += c;
  }
  return out;
}

}  // namespace

TEST_CASE("read_identity gives session, group and start time") {
  auto self = process::read_identity(getpid());
  REQUIRE(self);
  CHECK(self->pid == getpid());
  CHECK(self->sid == getsid(0));
  CHECK(self->pgid == getpgrp());
  CHECK(self->start_ticks > 0);
  CHECK(!process::read_identity(0x3ffffff));
}

TEST_CASE("end_recorded ends a recorded session's leader and its background descendants") {
  execd::test::TempDir dir;
  const std::string path = dir.str() + "/sessions";
  auto ledger = process::SessionLedger::create(path);
  REQUIRE(ledger);
  process::SpawnOptions o;
  o.argv = {"/bin/sh", "-c", "sleep 1000 & echo $!; exec sleep 1001"};
  o.env = {"PATH=/usr/bin:/bin"};
  auto child = process::spawn(o);
  REQUIRE(child);
  const pid_t grandchild = static_cast<pid_t>(std::stoi(read_line(child->stdout_fd.get())));
  ledger->add(child->pid);
  CHECK(ledger->size() == 1);
  REQUIRE(alive(grandchild));

  CHECK(process::SessionLedger::end_recorded(path) >= 2);
  waitpid(child->pid, nullptr, 0);
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    gone = !alive(grandchild);
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(gone);
}

TEST_CASE("a recorded pid whose process started later (a reused pid) is spared") {
  execd::test::TempDir dir;
  const std::string path = dir.str() + "/sessions";
  auto ledger = process::SessionLedger::create(path);
  REQUIRE(ledger);
  process::SpawnOptions o;
  o.argv = {"/bin/sh", "-c", "exec sleep 1000"};
  o.env = {"PATH=/usr/bin:/bin"};
  auto child = process::spawn(o);
  REQUIRE(child);
  ledger->add(child->pid);
  // Pretend the record is from an older process of the same pid: rewrite its start time.
  {
    auto id = process::read_identity(child->pid);
    REQUIRE(id);
    const int fd = ::open(path.c_str(), O_WRONLY);
    REQUIRE(fd >= 0);
    const uint64_t older = id->start_ticks - 1;
    CHECK(pwrite(fd, &older, sizeof older, 8) == sizeof older);
    ::close(fd);
  }
  CHECK(process::SessionLedger::end_recorded(path) == 0);
  CHECK(alive(child->pid));
  kill(child->pid, SIGKILL);
  waitpid(child->pid, nullptr, 0);
}

TEST_CASE("a session is forgotten once its leader is reaped and its group is empty; slots are reused") {
  execd::test::TempDir dir;
  auto ledger = process::SessionLedger::create(dir.str() + "/sessions");
  REQUIRE(ledger);
  for (int round = 0; round < 3; ++round) {
    process::SpawnOptions o;
    o.argv = {"/bin/true"};
    o.env = {};
    auto child = process::spawn(o);
    REQUIRE(child);
    ledger->add(child->pid);
    waitpid(child->pid, nullptr, 0);
    ledger->prune();
    CHECK(ledger->size() == 1);  // leader not reported gone yet
    ledger->leader_gone(child->pid);
    ledger->prune();
    CHECK(ledger->size() == 0);
  }
  CHECK(std::filesystem::file_size(dir.str() + "/sessions") == 16);  // one slot, reused
}
