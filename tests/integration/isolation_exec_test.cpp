// Issue 11 end to end: the isolation and limit fields on /command and /session, the
// `process` and `namespace` levels as code sees them, limits enforced and named in the
// terminal event, and nothing left behind (processes, cgroups, workspaces, descriptors).
#include <doctest/doctest.h>

#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "support/daemon_process.hpp"
#include "support/proc_probe.hpp"
#include "support/http_checks.hpp"
#include "support/sse_reader.hpp"
#include "support/temp_dir.hpp"

using execd::test::check_error;
using execd::test::DaemonProcess;
using execd::test::sse_request;
using execd::test::SseRequest;
using execd::test::SseResponse;
using execd::test::TempDir;
using execd::test::daemon_cgroups;
using execd::test::fd_count;
using execd::test::live_with;
using execd::test::processes;
using execd::test::within;
using nlohmann::json;

namespace {

constexpr const char* kToken = "tok-9f8e7d6c5b4a";
constexpr const char* kSecret = "hunter2-daemon-only";

SseResponse post(const DaemonProcess& d, const std::string& path, const json& body, bool token = false) {
  SseRequest req;
  req.method = "POST";
  req.path = path;
  req.body = body.dump();
  req.timeout = std::chrono::seconds(60);
  if (token) req.headers.emplace("X-EXECD-ACCESS-TOKEN", kToken);
  return sse_request(d.port(), req);
}

// Every stdout and stderr line of a run, joined with '\n'.
std::string output(const SseResponse& r) {
  std::string out;
  for (const auto& e : r.events) {
    if (e.type() == "stdout" || e.type() == "stderr") out += e.json.value("text", "") + "\n";
  }
  return out;
}

json terminal(const SseResponse& r) {
  REQUIRE_FALSE(r.events.empty());
  return r.events.back().json;
}

// Children of `pid` (the daemon is the subreaper: orphans and zombies end up here).
std::vector<std::string> children_of(pid_t pid) {
  std::vector<std::string> out;
  for (const auto& p : processes()) {
    if (p.ppid == pid) out.push_back(std::to_string(p.pid) + " " + p.stat_head);
  }
  return out;
}

std::vector<std::string> workspaces(const std::string& runtime_base) {
  std::vector<std::string> out;
  for (const auto& rt : std::filesystem::directory_iterator(runtime_base)) {
    const auto ws = rt.path() / "workspaces";
    if (!std::filesystem::exists(ws)) continue;
    for (const auto& e : std::filesystem::directory_iterator(ws)) out.push_back(e.path().string());
  }
  return out;
}

// `text` quoted as two adjacent shell words: the shell sees `text`, while the command
// line that carries it (readable in /proc) does not contain it.
std::string split(const std::string& text) {
  return "'" + text.substr(0, 4) + "''" + text.substr(4) + "'";
}

std::string killed_limit(const json& event) {
  return event.contains("killed") ? event["killed"].value("limit", "") : "";
}

}  // namespace

TEST_CASE("the isolation fields on /command and /session: accepted, validated, refused with a reason") {
  DaemonProcess d;
  auto ok = post(d, "/command",
                 {{"command", "echo fine"}, {"isolation", "process"}, {"memory_limit_mb", 256}, {"max_processes", 64},
                  {"cpu_time_limit_s", 30}, {"max_output_bytes", 1 << 20}, {"max_open_files", 256}});
  CHECK(ok.status == 200);
  CHECK(terminal(ok)["type"] == "execution_complete");
  CHECK(output(ok) == "fine\n");
  auto bg = post(d, "/command",
                 {{"command", "true"}, {"background", true}, {"isolation", "namespace"}, {"disk_limit_mb", 16}});
  CHECK(bg.status == 200);
  CHECK(terminal(bg)["type"] == "execution_complete");

  auto c = d.client();
  const auto bad = [&](const std::string& path, const json& body, const std::string& needle) {
    CAPTURE(body.dump());
    check_error(c->Post(path, body.dump(), "application/json"), 400, "INVALID_REQUEST_BODY", needle);
  };
  for (const char* path : {"/command", "/session"}) {
    const json base = std::string(path) == "/command" ? json{{"command", "true"}} : json::object();
    auto with = [&](const char* k, json v) {
      json b = base;
      b[k] = std::move(v);
      return b;
    };
    bad(path, with("isolation", "container"), "isolation");
    bad(path, with("memory_limit_mb", -5), "memory_limit_mb");
    bad(path, with("max_processes", "many"), "max_processes");
    bad(path, with("cpu_time_limit_s", 0), "cpu_time_limit_s");
    bad(path, with("max_output_bytes", 1.5), "max_output_bytes");
    bad(path, with("max_open_files", true), "max_open_files");
    bad(path, with("network", "off"), "network");
    // Unsupported combinations say why.
    bad(path, with("network", false), "namespace");
    bad(path, with("disk_limit_mb", 10), "namespace");
  }
}

TEST_CASE("daemon defaults come from the flags; a request overrides them") {
  DaemonProcess d({"--isolation", "namespace", "--max-output-bytes", "1000"});
  auto r = post(d, "/command", {{"command", "hostname; seq 1 2000"}});
  CHECK(output(r).rfind("sandbox\n", 0) == 0);
  CHECK(killed_limit(terminal(r)) == "output");
  auto plain = post(d, "/command", {{"command", "hostname; seq 1 2000 | tail -1"}, {"isolation", "none"}});
  CHECK(output(plain).find("sandbox") == std::string::npos);
  CHECK(output(plain).find("2000\n") != std::string::npos);
  // A session made without fields gets the defaults too.
  auto s = d.client()->Post("/session", "{}", "application/json");
  REQUIRE(s);
  REQUIRE(s->status == 200);
  const std::string id = json::parse(s->body)["session_id"];
  auto run = post(d, "/session/" + id + "/run", {{"command", "hostname"}});
  CHECK(output(run) == "sandbox\n");
}

TEST_CASE("process level: own session, clean environment, no inherited descriptors, no_new_privs") {
  TempDir tmp;
  const std::string envs = tmp.str() + "/envs";
  std::ofstream(envs) << "FROM_ENVS_FILE=yes\n";
  DaemonProcess d({"--envs-file", envs}, {std::string("EXECD_ACCESS_TOKEN=") + kToken, std::string("SECRET_X=") + kSecret});
  const std::string probe =
      "env; echo sid=$(awk '{print $6}' /proc/$$/stat) pid=$$; ls /proc/$$/fd | tr '\\n' ' '; echo; "
      "grep NoNewPrivs /proc/self/status";
  auto r = post(d, "/command", {{"command", probe}, {"isolation", "process"}, {"envs", {{"FROM_REQUEST", "1"}}}}, true);
  REQUIRE(r.status == 200);
  const std::string out = output(r);
  CAPTURE(out);
  CHECK(out.find("FROM_ENVS_FILE=yes") != std::string::npos);
  CHECK(out.find("FROM_REQUEST=1") != std::string::npos);
  CHECK(out.find("PATH=") != std::string::npos);
  CHECK(out.find(kSecret) == std::string::npos);
  CHECK(out.find(kToken) == std::string::npos);
  CHECK(out.find("NoNewPrivs:\t1") != std::string::npos);
  CHECK(out.find("0 1 2 \n") != std::string::npos);  // the shell's own descriptors: stdio only
  const auto sid = out.find("sid=");
  REQUIRE(sid != std::string::npos);
  const std::string sid_value = out.substr(sid + 4, out.find(' ', sid) - sid - 4);
  CHECK(out.find("pid=" + sid_value + "\n") != std::string::npos);  // session leader

  // The same at level none shows what process level takes away (the test can fail).
  auto none = post(d, "/command", {{"command", "env"}}, true);
  CHECK(output(none).find(kSecret) != std::string::npos);
}

TEST_CASE("namespace level: read-only system, nothing of the daemon visible, no network, own workspace") {
  TempDir base;
  DaemonProcess d({"--runtime-base", base.str()}, {std::string("EXECD_ACCESS_TOKEN=") + kToken, std::string("SECRET_X=") + kSecret});
  // Another execution, running meanwhile, must be invisible.
  auto other = post(d, "/command", {{"command", "sleep 4242"}, {"background", true}}, true);
  REQUIRE(other.status == 200);
  REQUIRE(within(std::chrono::seconds(5), [] { return !live_with("sleep 4242").empty(); }));
  const std::string daemon = std::to_string(d.pid());
  const std::string script =
      "touch /usr/execd-probe && echo USR-WRITABLE; "
      "cat /proc/" + daemon + "/environ && echo DAEMON-ENV-READ; "
      // Read first, then grep the copy: a grep running beside the cat would find the
      // secret in its own arguments.
      "cat /proc/*/environ /proc/*/cmdline 2>/dev/null | tr '\\0' '\\n' > /tmp/seen; "
      "echo secrets=$(grep -c -e " + split(kSecret) + " -e " + split(kToken) + " /tmp/seen); for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done "
      ">/tmp/cmdlines 2>/dev/null; echo others=$(grep -c 'sleep 42''42' /tmp/cmdlines); "
      "(echo > /dev/tcp/127.0.0.1/" + std::to_string(d.port()) + ") 2>/dev/null && echo DAEMON-REACHED; "
      "pwd; echo data > here.txt && echo wrote";
  auto r = post(d, "/command", {{"command", script}, {"isolation", "namespace"}}, true);
  REQUIRE(r.status == 200);
  const std::string out = output(r);
  CAPTURE(out);
  CHECK(out.find("Read-only file system") != std::string::npos);
  CHECK(out.find("USR-WRITABLE") == std::string::npos);
  CHECK(out.find("DAEMON-ENV-READ") == std::string::npos);
  CHECK(out.find("secrets=0\n") != std::string::npos);
  CHECK(out.find("others=0\n") != std::string::npos);
  CHECK(out.find("DAEMON-REACHED") == std::string::npos);
  CHECK(out.find("wrote") != std::string::npos);
  // The fresh workspace was under the runtime directory and goes with the execution (a
  // moment after its end: removed by the pool's thread, off the request path).
  const auto ws_at = out.find(base.str());
  REQUIRE(ws_at != std::string::npos);
  const std::string ws = out.substr(ws_at, out.find('\n', ws_at) - ws_at);
  CHECK(within(std::chrono::seconds(5), [&] { return !std::filesystem::exists(ws); }));
  CHECK(within(std::chrono::seconds(5), [&] { return workspaces(base.str()).empty(); }));

  // With network on, the daemon's port is reachable (the off case above is real).
  auto net = post(d, "/command",
                  {{"command", "(echo > /dev/tcp/127.0.0.1/" + std::to_string(d.port()) + ") && echo DAEMON-REACHED"},
                   {"isolation", "namespace"},
                   {"network", true}},
                  true);
  CHECK(output(net).find("DAEMON-REACHED") != std::string::npos);

  // A cwd is the workspace: writes land in it and it stays.
  TempDir cwd;
  auto in_cwd = post(d, "/command", {{"command", "pwd; echo kept > kept.txt"}, {"isolation", "namespace"}, {"cwd", cwd.str()}}, true);
  CHECK(output(in_cwd) == cwd.str() + "\n");
  CHECK(execd::test::read_file(cwd.str() + "/kept.txt") == "kept\n");
  for (pid_t p : live_with("sleep 4242")) ::kill(p, SIGKILL);
}

TEST_CASE("limits end executions, are named in the terminal event, and nothing is left behind") {
  TempDir base;
  DaemonProcess d({"--runtime-base", base.str(), "--kill-grace", "200ms"});
  // Warm up (first isolated run probes the host), then take the baseline.
  (void)post(d, "/command", {{"command", "true"}, {"isolation", "namespace"}});
  const size_t fds_before = fd_count(d.pid());
  const long rss_before = d.rss_kib();

  {
    INFO("fork bomb contained at max_processes");
    auto r = post(d, "/command", {{"command", ":(){ :|:& };:; sleep 2; echo survived"}, {"isolation", "process"},
                                  {"max_processes", 32}, {"timeout", 30000}});
    const json t = terminal(r);
    CAPTURE(t.dump());
    CHECK(t["type"] == "error");
    CHECK(killed_limit(t) == "processes");
    CHECK(t["killed"]["value"] == 32);
  }
  {
    INFO("a grandchild allocating 1 GiB under 128 MiB: OOM kill named");
    auto r = post(d, "/command", {{"command", "python3 -c 'x = bytes(1 << 30) + bytes(1)'; echo rc=$?"},
                                  {"isolation", "process"}, {"memory_limit_mb", 128}});
    const json t = terminal(r);
    CAPTURE(t.dump());
    CHECK(output(r).find("rc=137") != std::string::npos);
    CHECK(t["type"] == "error");
    CHECK(killed_limit(t) == "memory");
    CHECK(t["killed"]["value_mb"] == 128);
    CHECK(t["killed"]["oom_kill"] == true);
    CHECK(t["killed"]["message"].get<std::string>().find("OOM") != std::string::npos);
    CHECK(t.contains("exit_code"));
    CHECK(t.contains("duration_ms"));
  }
  {
    INFO("yes is capped at max_output_bytes: killed, the stream says truncated");
    const auto t0 = std::chrono::steady_clock::now();
    auto r = post(d, "/command", {{"command", "yes"}, {"isolation", "process"}, {"max_output_bytes", 100000}, {"timeout", 60000}});
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(30));
    const json t = terminal(r);
    CAPTURE(t.dump());
    CHECK(killed_limit(t) == "output");
    CHECK(t["killed"]["value_bytes"] == 100000);
    bool truncated = false;
    for (const auto& e : r.of_type("status")) truncated |= e.json.value("text", "").find("truncated") != std::string::npos;
    CHECK(truncated);
    CHECK(output(r).size() <= 100000);
    auto logs = d.client()->Get("/command/" + r.events.front().json.value("text", "") + "/logs");
    REQUIRE(logs);
    CHECK(logs->body.size() == 100000);
  }
  {
    INFO("cpu_time_limit_s kills a busy loop");
    auto r = post(d, "/command", {{"command", "while :; do :; done"}, {"isolation", "process"}, {"cpu_time_limit_s", 1},
                                  {"timeout", 60000}});
    const json t = terminal(r);
    CAPTURE(t.dump());
    CHECK(killed_limit(t) == "cpu_time");
    CHECK(t["killed"]["value_s"] == 1);
  }
  {
    INFO("several processes together reach the execution's CPU budget (the cgroup watchdog)");
    auto r = post(d, "/command", {{"command", "(while :; do :; done) & (while :; do :; done) & wait"}, {"isolation", "process"},
                                  {"cpu_time_limit_s", 2}, {"timeout", 60000}});
    const json t = terminal(r);
    CAPTURE(t.dump());
    CHECK(killed_limit(t) == "cpu_time");
  }
  {
    INFO("setsid escapes the group but not the cgroup");
    auto r = post(d, "/command", {{"command", "setsid sleep 1003 & echo started"}, {"isolation", "process"}});
    CHECK(output(r) == "started\n");
    CHECK(live_with("sleep 1003").empty());
  }
  {
    INFO("a process ignoring SIGTERM and SIGINT is killed at the timeout");
    auto r = post(d, "/command", {{"command", "trap '' TERM INT; sleep 1004 & wait; sleep 1004"}, {"isolation", "process"},
                                  {"timeout", 300}});
    const json t = terminal(r);
    CAPTURE(t.dump());
    CHECK(t["type"] == "error");
    CHECK(live_with("sleep 1004").empty());
  }
  {
    INFO("namespace level: the same limits hold inside bwrap");
    auto r = post(d, "/command", {{"command", "python3 -c 'x = bytes(1 << 30) + bytes(1)'"}, {"isolation", "namespace"},
                                  {"memory_limit_mb", 128}});
    CHECK(killed_limit(terminal(r)) == "memory");
    auto s = post(d, "/command", {{"command", "setsid sleep 1005 & echo started"}, {"isolation", "namespace"}});
    CHECK(output(s) == "started\n");
    CHECK(live_with("sleep 1005").empty());
  }

  // After all of it: no child of the daemon (zombie or not), no cgroup, no workspace, and
  // descriptors and RSS back near where they were.
  CHECK(within(std::chrono::seconds(3), [&] { return children_of(d.pid()).empty(); }));
  CAPTURE(children_of(d.pid()));
  // The cgroups of finished executions are removed off the request path (CgroupPool).
  CHECK(within(std::chrono::seconds(5), [&] { return daemon_cgroups(d.pid()).empty(); }));
  CAPTURE(daemon_cgroups(d.pid()));
  CHECK(within(std::chrono::seconds(5), [&] { return workspaces(base.str()).empty(); }));  // removed off the path
  CHECK(fd_count(d.pid()) <= fds_before + 4);
  CHECK(d.rss_kib() <= rss_before + 16 * 1024);
}

TEST_CASE("a namespace-level session: one sandbox for its life, runs keep state, limits per run, cleaned up") {
  TempDir base;
  DaemonProcess d({"--runtime-base", base.str(), "--kill-grace", "200ms"});
  auto c = d.client();
  auto created = c->Post("/session", json{{"isolation", "namespace"}, {"memory_limit_mb", 128}, {"max_output_bytes", 5000}}.dump(),
                         "application/json");
  REQUIRE(created);
  REQUIRE(created->status == 200);
  const std::string id = json::parse(created->body)["session_id"];
  const std::string run = "/session/" + id + "/run";

  auto first = post(d, run, {{"command", "hostname; cd /tmp && echo hi > f; X=41"}});
  CHECK(output(first) == "sandbox\n");
  auto second = post(d, run, {{"command", "cat f; echo $((X + 1)); touch /usr/x 2>/dev/null || echo ro"}});
  CHECK(output(second) == "hi\n42\nro\n");
  // An interrupt ends the run, not the sandboxed shell.
  auto slow = post(d, run, {{"command", "sleep 30"}, {"timeout", 300}});
  CHECK(terminal(slow)["type"] == "error");
  auto after = post(d, run, {{"command", "echo alive; pwd"}});
  CHECK(output(after) == "alive\n/tmp\n");
  // Limits bound each run and name themselves.
  auto oom = post(d, run, {{"command", "python3 -c 'x = bytes(1 << 30) + bytes(1)'"}});
  CHECK(killed_limit(terminal(oom)) == "memory");
  auto flood = post(d, run, {{"command", "yes"}});
  CHECK(killed_limit(terminal(flood)) == "output");
  CHECK(output(flood).size() <= 5000);
  auto still = post(d, run, {{"command", "echo still"}});
  CHECK(output(still) == "still\n");

  REQUIRE(workspaces(base.str()).size() == 1);
  CHECK(!daemon_cgroups(d.pid()).empty());
  auto del = c->Delete("/session/" + id);
  REQUIRE(del);
  CHECK(del->status == 200);
  CHECK(within(std::chrono::seconds(5), [&] { return workspaces(base.str()).empty(); }));  // removed off the path
  CHECK(within(std::chrono::seconds(5), [&] { return daemon_cgroups(d.pid()).empty(); }));
  CHECK(within(std::chrono::seconds(3), [&] { return children_of(d.pid()).empty(); }));
}
