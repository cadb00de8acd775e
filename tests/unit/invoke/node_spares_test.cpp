// invoke::NodeSpares against real node processes: started on a flavour's first use,
// taken whole (pipes, result memfd) and run as the invocation's process, replaced after
// a take, refused for startup variables they were not started with, level-process ones
// started with no_new_privs, a dead idle spare not handed out, and every idle one killed
// by the destructor. Also isolation::ChildSteps::apply_to on a running process.
#include "invoke/node_spares.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>

#include "isolation/child_steps.hpp"
#include "process/proc_table.hpp"
#include "process/reactor.hpp"
#include "process/spawn.hpp"

using namespace execd;
using nlohmann::json;

namespace {

struct Fixture {
  std::shared_ptr<process::Reactor> reactor = std::make_shared<process::Reactor>();
  std::shared_ptr<process::ChildReaper> reaper = std::make_shared<process::ChildReaper>(reactor);
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool alive(pid_t pid) {
  auto id = process::read_identity(pid);
  return id && id->state != 'Z';
}

template <typename Pred>
bool within(std::chrono::milliseconds limit, Pred pred) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

// Runs `code` on `event` in a taken spare (as the Invoker does, without the runner) and
// returns its result document and exit status.
std::pair<json, int> run(invoke::NodeSpares::Spare& spare, const std::string& code, const json& event,
                         std::vector<std::string> env, const std::string& cwd) {
  const std::string request = json{{"code", code}, {"event", event}, {"env", env}, {"cwd", cwd}}.dump();
  const int in = spare.child.stdin_fd.get();
  ::fcntl(in, F_SETFL, 0);
  REQUIRE(::write(in, request.data(), request.size()) == static_cast<ssize_t>(request.size()));
  spare.child.stdin_fd.reset();
  int status = 0;
  REQUIRE(::waitpid(spare.child.pid, &status, 0) == spare.child.pid);
  struct stat st {};
  REQUIRE(::fstat(spare.channel.get(), &st) == 0);
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  REQUIRE(::pread(spare.channel.get(), bytes.data(), bytes.size(), 0) == st.st_size);
  return {json::parse(bytes, nullptr, false), status};
}

}  // namespace

TEST_CASE("node spares: started on first use, taken whole, replaced, killed by the destructor") {
  Fixture f;
  invoke::NodeSpares::Options o;
  o.per_flavour = 1;
  o.retry_after = std::chrono::milliseconds(100);
  std::vector<pid_t> idle;
  {
    invoke::NodeSpares spares(f.reaper, o);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    CHECK(spares.idle().empty());  // nothing before a flavour is used
    // At level none a spare's startup variables are this process's own (LANG, say), as a
    // cold start's environment there is this process's plus the request's.
    const std::vector<std::string> env = process::environment_with({{"MINE", "m1"}});
    auto first = spares.take(invoke::Language::javascript, isolation::Level::none, env);
    REQUIRE_FALSE(first);
    CHECK(first.error().message.find("first javascript") != std::string::npos);
    REQUIRE(within(std::chrono::seconds(20), [&] { return spares.idle().size() == 1; }));
    const pid_t pid = spares.idle()[0];
    CHECK(process::read_identity(pid)->sid == pid);  // its own session
    // Its startup variables are the daemon's (this test's) own, so a request asking for
    // another NODE_OPTIONS cannot have it, and the spare stays.
    const auto other = process::environment_with({{"MINE", "m1"}, {"NODE_OPTIONS", "--no-warnings"}});
    auto refused = spares.take(invoke::Language::javascript, isolation::Level::none, other);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().message.find("NODE_OPTIONS") != std::string::npos);
    CHECK(spares.idle() == std::vector<pid_t>{pid});

    auto spare = spares.take(invoke::Language::javascript, isolation::Level::none, env);
    REQUIRE(spare);
    CHECK(spare->child.pid == pid);
    const std::string cwd = "/tmp";
    auto [doc, status] =
        run(*spare, "exports.handler = (e) => [e, process.env.MINE, process.cwd(), process.argv.length];", 7, env, cwd);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(doc == json{{"ok", true}, {"value", {7, "m1", cwd, 1}}});
    f.reaper->disown(pid);
    // Replaced off the taker's path.
    REQUIRE(within(std::chrono::seconds(20), [&] { return spares.idle().size() == 1 && spares.idle()[0] != pid; }));
    // A spare that died idle is never handed out.
    const pid_t next = spares.idle()[0];
    REQUIRE(::kill(next, SIGKILL) == 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto after_death = spares.take(invoke::Language::javascript, isolation::Level::none, env);
    if (after_death) {
      CHECK(after_death->child.pid != next);
      spares.discard(*after_death);
    }
    REQUIRE(within(std::chrono::seconds(20), [&] {
      const auto now = spares.idle();
      return now.size() == 1 && now[0] != next;
    }));
    idle = spares.idle();
  }
  for (const pid_t pid : idle) CHECK_FALSE(alive(pid));
}

TEST_CASE("node spares: level-process ones start with no_new_privs; apply_to gives a running process its limits") {
  Fixture f;
  invoke::NodeSpares::Options o;
  invoke::NodeSpares spares(f.reaper, o);
  const std::vector<std::string> env = {"PATH=/usr/bin:/bin", "HOME=/tmp"};
  REQUIRE_FALSE(spares.take(invoke::Language::javascript, isolation::Level::process, env));
  REQUIRE(within(std::chrono::seconds(20), [&] { return spares.idle().size() == 1; }));
  auto spare = spares.take(invoke::Language::javascript, isolation::Level::process, env);
  REQUIRE(spare);
  const pid_t pid = spare->child.pid;
  CHECK(slurp("/proc/" + std::to_string(pid) + "/status").find("NoNewPrivs:\t1") != std::string::npos);
  isolation::ChildSteps steps;
  steps.rlimits.push_back({RLIMIT_NOFILE, 64, 64});
  steps.no_new_privs = true;
  REQUIRE(steps.apply_to(pid));
  auto [doc, status] = run(*spare,
                           "exports.handler = () => /Max open "
                           "files\\s+64\\s+64/.test(require('fs').readFileSync('/proc/self/limits', 'utf8'));",
                           nullptr, env, "/");
  CHECK(doc == json{{"ok", true}, {"value", true}});
  f.reaper->disown(pid);

  // no_new_privs cannot be added to a process started without it.
  auto plain = f.reaper->spawn([] {
    process::SpawnOptions so;
    so.argv = {"sleep", "30"};
    so.env = {"PATH=/usr/bin:/bin"};
    return so;
  }());
  REQUIRE(plain);
  isolation::ChildSteps nnp;
  nnp.no_new_privs = true;
  auto refused = nnp.apply_to(plain->pid);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().message.find("no_new_privs") != std::string::npos);
  ::kill(plain->pid, SIGKILL);
  ::waitpid(plain->pid, nullptr, 0);
  f.reaper->disown(plain->pid);
}
