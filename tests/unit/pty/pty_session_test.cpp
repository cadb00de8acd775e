#include "pty/pty_session.hpp"

#include <doctest/doctest.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "process/child_reaper.hpp"
#include "process/proc_table.hpp"
#include "process/reactor.hpp"
#include "pty/pty_registry.hpp"

using namespace execd;
using namespace std::chrono_literals;

namespace {

struct Fixture {
  std::shared_ptr<process::Reactor> reactor = std::make_shared<process::Reactor>();
  std::shared_ptr<process::ChildReaper> reaper = std::make_shared<process::ChildReaper>(reactor);
  // A session released by the test while a reactor callback still holds it dies on the
  // reactor thread; the reactor must not die with it there (a thread cannot join itself).
  ~Fixture() {
    for (int i = 0; i < 500 && reactor.use_count() > 2; ++i) std::this_thread::sleep_for(10ms);
  }

  std::shared_ptr<pty::PtySession> session(pty::PtySpec spec = {}) {
    pty::PtyRegistry::Options o;
    pty::PtyRegistry env_source(reactor, reaper, o);
    pty::PtySession::Deps deps{reactor, reaper, env_source.base_environment(), nullptr, {}};
    return std::make_shared<pty::PtySession>("t", std::move(spec), std::move(deps));
  }
};

// Everything of `channel` (0: any) from offset 0 until `needle` shows up or 10 s pass.
std::string wait_for(pty::PtySession& s, const std::string& needle, uint8_t channel = 0,
                     std::chrono::milliseconds within = 10000ms) {
  const auto deadline = std::chrono::steady_clock::now() + within;
  std::string seen;
  uint64_t at = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    auto c = s.output().read(at, 65536);
    if (!c.bytes.empty()) {
      if (channel == 0 || c.channel == channel) seen += c.bytes;
      at = c.offset + c.bytes.size();
      if (seen.find(needle) != std::string::npos) return seen;
      continue;
    }
    if (s.output().is_closed()) break;
    s.output().wait_beyond(at, 100ms);
  }
  return seen;
}

bool gone(pid_t pid) {
  auto id = process::read_identity(pid);
  return !id || id->state == 'Z';
}

}  // namespace

TEST_CASE("pty mode: bash on a real terminal as its controlling tty, TERM set, input echoed") {
  Fixture f;
  auto s = f.session({"/tmp", {{"FOO", "bar"}}, 80, 24, {}});
  REQUIRE(s->start(pty::PtyMode::pty).ok());
  CHECK(s->status().running);
  REQUIRE(s->write_stdin("[ -t 0 ] && [ -t 1 ] && echo TTY-$((6*7)) $TERM $FOO $(pwd); tty\n").ok());
  const std::string out = wait_for(*s, "TTY-42");
  CHECK(out.find("TTY-42 xterm-256color bar /tmp") != std::string::npos);
  CHECK(wait_for(*s, "/dev/pts/").find("/dev/pts/") != std::string::npos);
  // The controlling tty: the shell leads its session, and ps shows the terminal.
  REQUIRE(s->write_stdin("ps -o tty= -p $$ | grep -q pts && echo CTTY-ok\n").ok());
  CHECK(wait_for(*s, "CTTY-ok\r\n").find("CTTY-ok\r\n") != std::string::npos);
  s->terminate();
}

TEST_CASE("pty mode: the daemon's environment never reaches the shell") {
  ::setenv("EXECD_PTY_TEST_SECRET", "s3cret", 1);
  Fixture f;
  auto s = f.session();
  REQUIRE(s->start(pty::PtyMode::pty).ok());
  REQUIRE(s->write_stdin("echo SECRET=${EXECD_PTY_TEST_SECRET:-unset}=\n").ok());
  CHECK(wait_for(*s, "SECRET=unset=").find("SECRET=unset=") != std::string::npos);
  ::unsetenv("EXECD_PTY_TEST_SECRET");
}

TEST_CASE("resize reaches the program: tput cols answers the new width") {
  Fixture f;
  auto s = f.session();
  REQUIRE(s->start(pty::PtyMode::pty).ok());
  REQUIRE(s->resize(123, 45).ok());
  REQUIRE(s->write_stdin("echo SIZE=$(tput cols)x$(tput lines)\n").ok());
  CHECK(wait_for(*s, "SIZE=123x45").find("SIZE=123x45") != std::string::npos);
  CHECK(s->status().cols == 123);
  CHECK_FALSE(s->resize(0, 10).ok());
  CHECK_FALSE(s->resize(10, 5000).ok());
}

TEST_CASE("SIGINT goes to the foreground job: a sleep is interrupted, the shell lives on") {
  Fixture f;
  auto s = f.session();
  REQUIRE(s->start(pty::PtyMode::pty).ok());
  REQUIRE(s->write_stdin("sleep 100\n").ok());
  // Wait until sleep is the terminal's foreground job (tpgid in /proc/<shell>/stat is no
  // longer the shell's group): a SIGINT before that reaches the shell, which ignores it.
  const pid_t shell = s->status().pid;
  auto foreground = [shell]() -> long {
    std::ifstream in("/proc/" + std::to_string(shell) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::istringstream rest(stat.substr(stat.rfind(')') + 2));
    std::string field;
    for (int i = 3; i <= 8 && rest >> field; ++i) {
    }
    return std::atol(field.c_str());
  };
  bool sleeping = false;
  for (int i = 0; i < 500 && !sleeping; ++i) {
    // ... and that group's leader has exec'd sleep (until then it is a bash child that
    // still handles SIGINT as the interactive shell does).
    const long fg = foreground();
    if (fg > 0 && fg != shell) {
      std::ifstream comm("/proc/" + std::to_string(fg) + "/comm");
      std::string name;
      comm >> name;
      sleeping = name == "sleep";
    }
    if (!sleeping) std::this_thread::sleep_for(10ms);
  }
  REQUIRE(sleeping);
  const auto start = std::chrono::steady_clock::now();
  REQUIRE(s->signal("SIGINT").ok());
  // An interactive shell drops the rest of a line whose job died of SIGINT: ask afterwards.
  REQUIRE(s->write_stdin("echo AFTER=$?\n").ok());
  const std::string after = wait_for(*s, "AFTER=130");
  INFO("output: " << after);
  CHECK(after.find("AFTER=130") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - start < 10s);
  CHECK(s->status().running);
  CHECK_FALSE(s->signal("SIGNOPE").ok());
  CHECK(pty::signal_by_name("int").value() == SIGINT);
  CHECK(pty::signal_by_name("15").value() == SIGTERM);
  CHECK(pty::signal_by_name("SIGWINCH").value() == SIGWINCH);
}

TEST_CASE("exit 3: the code is kept, the output closed after the last bytes") {
  Fixture f;
  auto s = f.session();
  REQUIRE(s->start(pty::PtyMode::pty).ok());
  REQUIRE(s->write_stdin("echo BYE; exit 3\n").ok());
  const std::string out = wait_for(*s, "no such text", 0, 10000ms);
  CHECK(out.find("BYE") != std::string::npos);
  CHECK(s->output().is_closed());
  const auto st = s->status();
  CHECK_FALSE(st.running);
  REQUIRE(st.exit_code.has_value());
  CHECK(*st.exit_code == 3);
  CHECK_FALSE(s->write_stdin("echo\n").ok());
}

TEST_CASE("pipe mode: stdout and stderr on channels of their own, no terminal") {
  Fixture f;
  auto s = f.session();
  REQUIRE(s->start(pty::PtyMode::pipe).ok());
  CHECK(s->start(pty::PtyMode::pty).ok());  // already started: the mode stays
  CHECK(s->mode() == pty::PtyMode::pipe);
  REQUIRE(s->write_stdin("echo OUT-1; echo ERR-2 >&2; [ -t 0 ] || echo NOTTY $TERM\n").ok());
  CHECK(wait_for(*s, "ERR-2", pty::kStderr).find("ERR-2") != std::string::npos);
  const std::string out = wait_for(*s, "NOTTY", pty::kStdout);
  CHECK(out.find("OUT-1\n") != std::string::npos);
  CHECK(out.find("NOTTY dumb") != std::string::npos);
  CHECK(out.find("ERR-2") == std::string::npos);
  REQUIRE(s->write_stdin("exit 7\n").ok());
  wait_for(*s, "never", 0, 10000ms);
  CHECK(s->exit_code() == 7);
}

TEST_CASE("terminate kills every process of the session, job-control groups included") {
  Fixture f;
  auto s = f.session();
  REQUIRE(s->start(pty::PtyMode::pty).ok());
  REQUIRE(s->write_stdin("sleep 300 & echo BG=$!=; echo DONE-$((2+3))\n").ok());
  // The typed line echoes "BG=$!=" first; the answer is BG=<digits>=.
  const std::string out = wait_for(*s, "DONE-5");
  auto at = out.find("BG=");
  while (at != std::string::npos && !std::isdigit(static_cast<unsigned char>(out[at + 3])))
    at = out.find("BG=", at + 1);
  REQUIRE(at != std::string::npos);
  const pid_t bg = std::stoi(out.substr(at + 3));
  const pid_t shell = s->status().pid;
  REQUIRE(bg > 0);
  CHECK(process::read_identity(bg)->pgid != shell);  // its own job group
  s->terminate();
  CHECK_FALSE(s->status().running);
  for (int i = 0; i < 300 && !(gone(bg) && gone(shell)); ++i) std::this_thread::sleep_for(10ms);
  CHECK(gone(bg));
  CHECK(gone(shell));
  CHECK_FALSE(s->start(pty::PtyMode::pty).ok());
}

TEST_CASE("one holder at a time: a second is refused, a takeover evicts the first") {
  Fixture f;
  auto s = f.session();
  int evicted_a = 0;
  auto a = s->attach(false, [&] { ++evicted_a; });
  REQUIRE(a.ok());
  CHECK_FALSE(s->idle_since().has_value());
  auto refused = s->attach(false, [] {});
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().code == core::Errc::conflict);
  auto b = s->attach(true, [] {});
  REQUIRE(b.ok());
  CHECK(evicted_a == 1);
  s->detach(*a);  // the old holder leaving does not detach the new one
  CHECK(s->status().attached);
  s->detach(*b);
  CHECK_FALSE(s->status().attached);
  CHECK(s->idle_since().has_value());
}

TEST_CASE("registry: the cap is a capacity error, a bad cwd is refused, idle sessions are reaped") {
  Fixture f;
  pty::PtyRegistry::Options o;
  o.max_sessions = 2;
  o.idle_timeout = 200ms;
  o.reap_every = 50ms;
  pty::PtyRegistry reg(f.reactor, f.reaper, o);
  auto bad = reg.create({"/nonexistent/dir", {}, 80, 24, {}});
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == core::Errc::invalid_argument);
  CHECK_FALSE(reg.create({"", {}, 0, 24, {}}).ok());
  auto one = reg.create({});
  auto two = reg.create({});
  REQUIRE(one.ok());
  REQUIRE(two.ok());
  auto three = reg.create({});
  REQUIRE_FALSE(three.ok());
  CHECK(three.error().code == core::Errc::capacity);
  // One held: only the other is reaped.
  auto held = (*one)->attach(false, [] {});
  REQUIRE(held.ok());
  REQUIRE((*two)->start(pty::PtyMode::pty).ok());
  const pid_t shell = (*two)->status().pid;
  const std::string two_id = (*two)->id();
  for (int i = 0; i < 300 && reg.size() > 1; ++i) std::this_thread::sleep_for(10ms);
  CHECK(reg.size() == 1);
  CHECK(reg.find(two_id) == nullptr);
  CHECK(reg.find((*one)->id()) != nullptr);
  for (int i = 0; i < 300 && !gone(shell); ++i) std::this_thread::sleep_for(10ms);
  CHECK(gone(shell));
  CHECK(reg.remove((*one)->id()).ok());
  CHECK(reg.remove((*one)->id()).error().code == core::Errc::not_found);
}

TEST_CASE("a real terminal: stty sees the size, job control stops and lists a job, vim and top run and quit") {
  Fixture f;
  auto s = f.session();
  REQUIRE(s->start(pty::PtyMode::pty).ok());
  REQUIRE(s->resize(100, 30).ok());
  REQUIRE(s->write_stdin("echo STTY=$(stty size)=\n").ok());
  CHECK(wait_for(*s, "STTY=30 100=").find("STTY=30 100=") != std::string::npos);

  // Job control: SIGTSTP stops the foreground job, `jobs` lists it, `kill %1` ends it.
  REQUIRE(s->write_stdin("sleep 77\n").ok());
  const pid_t shell = s->status().pid;
  bool sleeping = false;
  for (int i = 0; i < 500 && !sleeping; ++i) {
    for (const auto& p : process::list_identities()) {
      if (p.sid == shell && p.pid != shell) {
        std::ifstream comm("/proc/" + std::to_string(p.pid) + "/comm");
        std::string name;
        comm >> name;
        sleeping = sleeping || name == "sleep";
      }
    }
    if (!sleeping) std::this_thread::sleep_for(10ms);
  }
  REQUIRE(sleeping);
  REQUIRE(s->signal("SIGTSTP").ok());
  CHECK(wait_for(*s, "Stopped").find("Stopped") != std::string::npos);
  REQUIRE(s->write_stdin("jobs; kill %1; echo JOBS-DONE-$((3*3))\n").ok());
  const std::string jobs = wait_for(*s, "JOBS-DONE-9");
  CHECK(jobs.find("sleep 77") != std::string::npos);

  // vim on the alternate screen, then :q; top in its interactive mode, then q.
  REQUIRE(s->write_stdin("vim -u NONE -N\n").ok());
  CHECK(wait_for(*s, "\x1b[?1049h").find("\x1b[?1049h") != std::string::npos);
  // vim reads its first keys only once it has drawn; input sent earlier may be dropped.
  std::this_thread::sleep_for(300ms);
  REQUIRE(s->write_stdin(":q\r").ok());
  CHECK(wait_for(*s, "\x1b[?1049l").find("\x1b[?1049l") != std::string::npos);
  REQUIRE(s->write_stdin("echo VIM-QUIT-$((2*4))\n").ok());
  CHECK(wait_for(*s, "VIM-QUIT-8").find("VIM-QUIT-8") != std::string::npos);
  REQUIRE(s->write_stdin("top -d 5\n").ok());
  CHECK(wait_for(*s, "load average").find("load average") != std::string::npos);
  std::this_thread::sleep_for(300ms);
  const uint64_t before_quit = s->output().end();
  REQUIRE(s->write_stdin("q").ok());
  // Back at the prompt (top restores the screen on its way out) before typing again.
  for (int i = 0; i < 500 && s->output().end() == before_quit; ++i) std::this_thread::sleep_for(10ms);
  std::this_thread::sleep_for(300ms);
  REQUIRE(s->write_stdin("echo TOP-QUIT-$((2*5))\n").ok());
  CHECK(wait_for(*s, "TOP-QUIT-10").find("TOP-QUIT-10") != std::string::npos);
}
