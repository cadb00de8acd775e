// PTY sessions over WebSocket (issue 14) against the real build/execd, driven by a real
// WebSocket client: tests/integration/pty_client.py on Debian's python3-websocket. Each
// case runs one scenario of the script and asserts on the JSON it prints. The daemon runs
// with an access token, as in production; the script sends it as a header, or as the
// `execd.token.<token>` subprotocol where a browser would.
#include <doctest/doctest.h>
#include <httplib.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "support/daemon_process.hpp"

using namespace execd;
using nlohmann::json;

namespace {

constexpr const char* kToken = "pty-test-token-8d1f";

std::string script() {
  const char* dir = std::getenv("PTY_TEST_DIR");
  REQUIRE_MESSAGE(dir != nullptr, "PTY_TEST_DIR is not set (run through meson test)");
  return std::string(dir) + "/pty_client.py";
}

httplib::Headers auth() {
  return {{"X-EXECD-ACCESS-TOKEN", kToken}};
}

struct Daemon {
  test::DaemonProcess d;
  explicit Daemon(std::vector<std::string> extra = {}) : d(with_token(std::move(extra))) {}
  static std::vector<std::string> with_token(std::vector<std::string> extra) {
    extra.insert(extra.begin(), {"--access-token", kToken});
    return extra;
  }
  std::string base() const { return "http://127.0.0.1:" + std::to_string(d.port()); }

  std::string create(const json& body = json::object()) {
    auto res = d.client()->Post("/pty", auth(), body.dump(), "application/json");
    REQUIRE(res);
    REQUIRE_MESSAGE(res->status == 200, res->body);
    return json::parse(res->body)["session_id"].get<std::string>();
  }

  // Runs one scenario of the client script; fails loudly when it prints no JSON.
  json run(const std::string& scenario, const std::string& sid) {
    const std::string out = test::shell_output("timeout 90 /usr/bin/python3 " + script() + " " + scenario + " " +
                                               base() + " " + sid + " " + kToken + " 2>&1");
    const auto at = out.rfind("\n{");
    const std::string last = at == std::string::npos ? out : out.substr(at + 1);
    json r = json::parse(last, nullptr, false);
    REQUIRE_MESSAGE(r.is_object(), "the client script failed: " << out);
    return r;
  }
};

bool process_gone(int pid) {
  if (::kill(pid, 0) != 0) return true;
  return test::shell_output("ps -o stat= -p " + std::to_string(pid)).find('Z') != std::string::npos;
}

}  // namespace

TEST_CASE("echo: connected frame first, stdin as 0x00 + bytes, stdout on channel 1, ping answered") {
  Daemon daemon;
  const std::string sid = daemon.create({{"cwd", "/tmp"}});
  const json r = daemon.run("echo", sid);
  CHECK(r["connected"]["type"] == "connected");
  CHECK(r["connected"]["session_id"] == sid);
  CHECK(r["connected"]["mode"] == "pty");
  CHECK(r["connected"]["offset"] == 0);
  CHECK(r["echoed"] == true);
  CHECK(r["pong"] == true);
  CHECK(r["term"] == true);  // TERM=xterm-256color and a /dev/pts terminal
}

TEST_CASE("resize: tput cols and lines answer the new size; GET /pty/{id} shows it") {
  Daemon daemon;
  const std::string sid = daemon.create();
  const json r = daemon.run("resize", sid);
  CHECK(r["tput"] == true);
  CHECK(r["status"]["cols"] == 123);
  CHECK(r["status"]["rows"] == 45);
  CHECK(r["status"]["running"] == true);
  CHECK(r["status"]["attached"] == true);
  CHECK(r["status"]["output_offset"].get<uint64_t>() > 0);
}

TEST_CASE("SIGINT reaches the foreground sleep at once; the shell lives on") {
  Daemon daemon;
  const std::string sid = daemon.create();
  const json r = daemon.run("sigint", sid);
  CHECK(r["sleeping"] == true);
  CHECK(r["interrupted"] == true);
  CHECK(r["seconds"].get<double>() < 5.0);
}

TEST_CASE("exit 3: an exit frame with the code, close 1000, and the code kept on the session") {
  Daemon daemon;
  const std::string sid = daemon.create();
  const json r = daemon.run("exit", sid);
  REQUIRE(r["exit"].size() == 1);
  CHECK(r["exit"][0]["exit_code"] == 3);
  CHECK(r["close"][0] == 1000);
  CHECK(r["status"]["running"] == false);
  CHECK(r["status"]["exit_code"] == 3);
}

TEST_CASE("a second socket is a 409 JSON; takeover=1 closes the first with 4001 TAKEN_OVER, same shell") {
  Daemon daemon;
  const std::string sid = daemon.create();
  const json r = daemon.run("takeover", sid);
  CHECK(r["second"][0] == 409);
  CHECK(r["second"][1]["code"] == "CONFLICT");
  CHECK(r["second"][1]["message"].get<std::string>().find("takeover=1") != std::string::npos);
  CHECK(r["old_close"][0] == 4001);
  CHECK(r["old_close"][1] == "TAKEN_OVER");
  CHECK(r["same_shell"] == true);
}

TEST_CASE("since=<offset> replays the scrollback as 0x03 frames with their offsets") {
  Daemon daemon;
  const std::string sid = daemon.create();
  const json r = daemon.run("replay", sid);
  CHECK(r["replayed"] == true);
  CHECK(r["connected"]["replay_from"] == 0);
  CHECK(r["connected"]["offset"] == r["offset"]);
  REQUIRE(r["replay_offsets"].size() >= 1);
  CHECK(r["replay_offsets"][0] == 0);
  uint64_t total = 0;
  for (const auto& n : r["replay_sizes"]) total += n.get<uint64_t>();
  CHECK(total == r["offset"].get<uint64_t>());
  // From 4 bytes before the end: exactly those 4 bytes, at their offset.
  REQUIRE(r["tail_replay"].size() == 1);
  CHECK(r["tail_replay"][0][0] == r["offset"].get<uint64_t>() - 4);
  CHECK(r["tail_replay"][0][1] == 4);
}

TEST_CASE("pipe mode (pty=0): stdout on 0x01, stderr on 0x02, no terminal") {
  Daemon daemon;
  const std::string sid = daemon.create();
  const json r = daemon.run("pipe", sid);
  CHECK(r["connected"]["mode"] == "pipe");
  CHECK(r["out"] == "OUT-1\nNOTTY\n");
  CHECK(r["err"] == "ERR-2\n");
}

TEST_CASE("DELETE kills the shell's whole session; the socket gets the exit and close 1000") {
  Daemon daemon;
  const std::string sid = daemon.create();
  const json r = daemon.run("delete", sid);
  const int bg = r["bg"].get<int>();
  REQUIRE(bg > 0);
  CHECK(r["delete"] == 200);
  REQUIRE(r["exit"].size() == 1);
  CHECK(r["exit"][0]["exit_code"] == 128 + SIGKILL);
  CHECK(r["close"][0] == 1000);
  CHECK(r["after"] == 404);
  bool gone = false;
  for (int i = 0; i < 300 && !gone; ++i) {
    gone = process_gone(bg);
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(gone);  // the background job in its own group went too
}

TEST_CASE("bad client frames get JSON error frames, and the session goes on") {
  Daemon daemon;
  const std::string sid = daemon.create();
  const json r = daemon.run("bad", sid);
  REQUIRE(r["errors"].size() == 6);
  for (const auto& e : r["errors"]) {
    CHECK(e["type"] == "error");
    CHECK(e["code"] == "INVALID_REQUEST_BODY");
    CHECK_FALSE(e["message"].get<std::string>().empty());
  }
  CHECK(r["errors"][1]["message"].get<std::string>().find("nope") != std::string::npos);
  CHECK(r["errors"][5]["message"].get<std::string>().find("SIGNOPE") != std::string::npos);
  CHECK(r["pong"] == 1);
  CHECK(r["alive"] == true);
}

TEST_CASE("the token as subprotocol execd.token.<t>; the shell sees neither it nor the daemon's descriptors") {
  Daemon daemon;
  const std::string sid = daemon.create();
  const json r = daemon.run("token", sid);
  CHECK(r["no_token"][0] == 401);
  CHECK(r["no_token"][1]["code"] == "UNAUTHORIZED");
  CHECK(r["wrong"][0] == 401);
  CHECK(r["subprotocol"] == "execd");
  REQUIRE(r["fds"].size() >= 3);
  std::string fds;
  for (const auto& f : r["fds"]) {
    const std::string line = f.get<std::string>();
    fds += line + "; ";
    CHECK_MESSAGE(line.find("/dev/pts/") != std::string::npos, "a descriptor that is not the terminal: " << line);
  }
  CHECK_MESSAGE(fds.find("0 /dev/pts/") != std::string::npos, fds);
  CHECK(r["leak"] == json::array({"LEAK=0"}));
  CHECK(r["execd_vars"] == json::array({"EXECD_VARS=0"}));
}

TEST_CASE("HTTP errors are JSON: bad fields 400, unknown ids 404, bad upgrades 400/426, the cap 503") {
  Daemon daemon({"--max-pty-sessions", "1"});
  auto c = daemon.d.client();
  for (const char* body : {R"({"cols":0})", R"({"rows":5000})", R"({"envs":"A=1"})", R"({"cwd":"/no/such/dir"})",
                           R"([1])", R"({"cwd":7})"}) {
    auto res = c->Post("/pty", auth(), body, "application/json");
    REQUIRE(res);
    INFO("body: " << body);
    CHECK(res->status == 400);
    CHECK(json::parse(res->body)["code"] == "INVALID_REQUEST_BODY");
  }
  auto missing = c->Get("/pty/nope", auth());
  REQUIRE(missing);
  CHECK(missing->status == 404);
  CHECK(json::parse(missing->body)["code"] == "NOT_FOUND");
  auto del = c->Delete("/pty/nope", auth());
  REQUIRE(del);
  CHECK(del->status == 404);

  const std::string sid = daemon.create();
  auto full = c->Post("/pty", auth(), "{}", "application/json");
  REQUIRE(full);
  CHECK(full->status == 503);
  CHECK(json::parse(full->body)["code"] == "CAPACITY");
  CHECK(json::parse(full->body)["message"].get<std::string>().find("--max-pty-sessions") != std::string::npos);

  // A plain GET of the socket's path, and an upgrade of version 8.
  auto plain = c->Get(("/pty/" + sid + "/ws").c_str(), auth());
  REQUIRE(plain);
  CHECK(plain->status == 400);
  CHECK(json::parse(plain->body)["message"].get<std::string>().find("Upgrade") != std::string::npos);
  httplib::Headers v8 = auth();
  v8.emplace("Upgrade", "websocket");
  v8.emplace("Connection", "Upgrade");
  v8.emplace("Sec-WebSocket-Version", "8");
  v8.emplace("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
  auto old = c->Get(("/pty/" + sid + "/ws").c_str(), v8);
  REQUIRE(old);
  CHECK(old->status == 426);
  CHECK(old->get_header_value("Sec-WebSocket-Version") == "13");
  CHECK(json::parse(old->body)["message"].get<std::string>().find("13") != std::string::npos);
  httplib::Headers v13 = v8;
  v13.erase("Sec-WebSocket-Version");
  v13.emplace("Sec-WebSocket-Version", "13");
  auto bad_query = c->Get(("/pty/" + sid + "/ws?since=abc").c_str(), v13);
  REQUIRE(bad_query);
  CHECK(bad_query->status == 400);
  auto unknown_ws = c->Get("/pty/nope/ws", auth());
  REQUIRE(unknown_ws);
  CHECK(unknown_ws->status == 404);

  // Not started until a socket attaches.
  auto st = c->Get(("/pty/" + sid).c_str(), auth());
  REQUIRE(st);
  const json status = json::parse(st->body);
  CHECK(status["started"] == false);
  CHECK(status["running"] == false);
  CHECK(status["exit_code"].is_null());
  CHECK(status["output_offset"] == 0);
  auto gone = c->Delete(("/pty/" + sid).c_str(), auth());
  REQUIRE(gone);
  CHECK(gone->status == 200);
  auto again = c->Post("/pty", auth(), "{}", "application/json");
  REQUIRE(again);
  CHECK(again->status == 200);
}

TEST_CASE("isolation fields: a process-level session runs with no_new_privs in its own cgroup") {
  Daemon daemon;
  const std::string sid = daemon.create({{"isolation", "process"}, {"max_processes", 64}});
  const json r = daemon.run("isolated", sid);
  CHECK(r["no_new_privs"] == json::array({"1"}));
  REQUIRE(r["cgroup_lines"].size() == 1);
  CHECK(std::stoi(r["cgroup_lines"][0].get<std::string>()) >= 1);  // a cgroup path naming execd

  auto c = daemon.d.client();
  auto bad = c->Post("/pty", auth(), R"({"isolation":"sideways"})", "application/json");
  REQUIRE(bad);
  CHECK(bad->status == 400);
  // Unisolated sessions are not in a cgroup of execd's and may gain privileges.
  const std::string plain = daemon.create();
  const json p = daemon.run("isolated", plain);
  CHECK(p["no_new_privs"] == json::array({"0"}));
}

namespace {

// The memory controller's directory of a cgroup path from /proc/<pid>/cgroup (v1 host).
std::string memory_cgroup_dir(const json& r) {
  REQUIRE_MESSAGE(r["memory_cgroup"].size() == 1, r.dump());
  return "/sys/fs/cgroup/memory" + r["memory_cgroup"][0].get<std::string>();
}

bool dir_exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

}  // namespace

TEST_CASE("namespace isolation: the shell in bubblewrap has the terminal, job control, Ctrl-C, resize, exit 3, "
          "the limits, and sees nothing of the daemon") {
  Daemon daemon;
  const std::string sid =
      daemon.create({{"isolation", "namespace"}, {"memory_limit_mb", 64}, {"max_open_files", 256}});
  const json r = daemon.run("sandbox", sid);
  INFO(r.dump());
  // pid 2 of its own pid namespace (bwrap's init is 1), bubblewrap's hostname, the
  // terminal on stdin; bwrap shows the session's own pty as /dev/console.
  CHECK(r["id"] == "2:sandbox:tty:/dev/console");
  // HOME is the fresh workspace (the host's is not in the sandbox), also the cwd.
  const std::string home = r["home"].get<std::string>();
  const auto colon = home.find(':');
  REQUIRE(colon != std::string::npos);
  CHECK(home.substr(0, colon) == home.substr(colon + 1));
  CHECK(home.find("/workspaces/p-") != std::string::npos);
  CHECK(r["token_in_env"] == "0");
  CHECK(r["execd_vars"] == "0");
  CHECK(r["no_new_privs"] == "1");
  // Only the sandbox's own processes: bwrap's init, the shell and the probe's pipeline.
  std::string procs = r["processes"].get<std::string>();
  CHECK(procs.find("execd") == std::string::npos);
  for (const char* name : {"bwrap", "bash"}) CHECK(procs.find(name) != std::string::npos);
  REQUIRE(r["fds"].size() >= 3);
  std::string fds;
  for (const auto& f : r["fds"]) {
    fds += f.get<std::string>() + "; ";
    CHECK_MESSAGE(f.get<std::string>().find("/dev/pts/") != std::string::npos, "not the terminal: " << f);
  }
  CHECK_MESSAGE(fds.find("0 /dev/pts/") == 0, fds);
  CHECK(r["daemon_port"] == "closed");  // no network namespace shared with the daemon
  CHECK(r["usr"] == "read-only");
  CHECK(r["workspace"] == "writable");
  // The limits: RLIMIT_NOFILE, and the cgroup's memory limit killing a 256 MiB python.
  CHECK(r["nofile"] == "256");
  CHECK(r["memory_limit_bytes"] == 64 * 1024 * 1024);
  CHECK(r["memory_hog"] == "137");
  // Job control and signals as outside the sandbox.
  CHECK(r["fg_sleep"] == true);
  CHECK(r["ctrl_c"] == "130");
  CHECK(r["fg_sleep2"] == true);
  CHECK(r["stopped"] == true);
  CHECK(r["resumed"] == true);
  CHECK(r["killed_job"] == "143");
  CHECK(r["fg_sleep3"] == true);
  CHECK(r["signal_frame"] == "130");
  CHECK(r["size"] == "123x45");
  REQUIRE(r["exit"].size() == 1);
  CHECK(r["exit"][0]["exit_code"] == 3);
  CHECK(r["close"][0] == 1000);
  CHECK(r["status"]["exit_code"] == 3);
  // Nothing left: bwrap reaped, the cgroup removed (off the request path: polled).
  const std::string cgroup = memory_cgroup_dir(r);
  CHECK(cgroup.find("execd-") != std::string::npos);
  CHECK(process_gone(r["pid"].get<int>()));
  bool removed = false;
  for (int i = 0; i < 300 && !removed; ++i) {
    removed = !dir_exists(cgroup);
    if (!removed) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(removed);
}

TEST_CASE("namespace isolation: DELETE ends the sandbox with its background jobs and removes its cgroup") {
  Daemon daemon;
  const std::string sid = daemon.create({{"isolation", "namespace"}});
  const json r = daemon.run("delete", sid);
  INFO(r.dump());
  CHECK(r["delete"] == 200);
  REQUIRE(r["exit"].size() == 1);
  CHECK(r["exit"][0]["exit_code"] == 128 + SIGKILL);
  CHECK(r["close"][0] == 1000);
  const std::string cgroup = memory_cgroup_dir(r);
  bool gone = false;
  for (int i = 0; i < 300 && !gone; ++i) {
    gone = process_gone(r["pid"].get<int>()) && !dir_exists(cgroup);
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(gone);  // the cgroup held every process of the sandbox, the background sleep too
}

TEST_CASE("namespace isolation as the daemon's default: a PTY session runs in the sandbox, pipe mode too") {
  Daemon daemon({"--isolation", "namespace"});
  const std::string sid = daemon.create();
  const json r = daemon.run("pipe_sandbox", sid);
  CHECK(r["connected"]["mode"] == "pipe");
  CHECK(r["out"] == "PID-2\nNOTTY\n");  // pid 2 of the sandbox's pid namespace
  CHECK(r["err"] == "ERR-2\n");
  CHECK(r["spawned"] == "bwrap");
}
