// Bash sessions and the process list, against real shells and processes: state that
// persists between runs, per-run exit codes and timeouts, deletion, and /processes.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "support/daemon_process.hpp"
#include "support/http_checks.hpp"
#include "support/sse_reader.hpp"
#include "support/temp_dir.hpp"

using execd::test::check_error;
using execd::test::DaemonProcess;
using execd::test::sse_request;
using execd::test::SseRequest;
using execd::test::SseResponse;
using nlohmann::json;

namespace {

std::string create_session(const DaemonProcess& d, const json& body = json::object()) {
  auto r = d.client()->Post("/session", body.dump(), "application/json");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  const auto id = json::parse(r->body).value("session_id", "");
  CHECK(id.size() == 36);
  return id;
}

SseResponse run_in(const DaemonProcess& d, const std::string& session, const json& body) {
  SseRequest req;
  req.method = "POST";
  req.path = "/session/" + session + "/run";
  req.body = body.dump();
  return sse_request(d.port(), req);
}

std::vector<std::string> stdout_of(const SseResponse& r) {
  std::vector<std::string> out;
  for (const auto& e : r.of_type("stdout")) out.push_back(e.json.value("text", ""));
  return out;
}


}  // namespace

TEST_CASE("a session keeps cd, export, shell variables and functions between runs") {
  execd::test::TempDir dir;
  const auto start = (dir.path() / "made" / "here").string();
  DaemonProcess d;
  const auto sid = create_session(d, {{"cwd", start}});
  CHECK(std::filesystem::is_directory(start));  // created when missing
  auto r = run_in(d, sid, {{"command", "pwd"}});
  CHECK(stdout_of(r) == std::vector<std::string>{std::filesystem::canonical(start).string()});
  REQUIRE(r.events.front().type() == "init");
  CHECK(r.events.front().json["text"] == sid);
  r = run_in(d, sid, {{"command", "export E2E_SESSION_ENV=exported; plain=kept; greet() { echo \"hi $1\"; }; cd /"}});
  CHECK(r.events.back().type() == "execution_complete");
  r = run_in(d, sid, {{"command", "echo $E2E_SESSION_ENV; echo $plain; greet you; pwd; bash -c 'echo child:$E2E_SESSION_ENV'"}});
  CHECK(stdout_of(r) == std::vector<std::string>{"exported", "kept", "hi you", "/", "child:exported"});
  // A per-run cwd applies to that run and becomes the session's.
  r = run_in(d, sid, {{"command", "pwd"}, {"cwd", "/var"}});
  CHECK(stdout_of(r) == std::vector<std::string>{"/var"});
  r = run_in(d, sid, {{"command", "pwd"}});
  CHECK(stdout_of(r) == std::vector<std::string>{"/var"});
}

TEST_CASE("each run reports its own exit code; stderr is merged and blank lines dropped") {
  DaemonProcess d;
  const auto sid = create_session(d);
  auto r = run_in(d, sid, {{"command", "sh -c 'echo x >&2; exit 7'"}});
  CHECK(stdout_of(r) == std::vector<std::string>{"x"});
  REQUIRE(r.of_type("error").size() == 1);
  CHECK(r.of_type("execution_complete").empty());
  CHECK(r.of_type("error")[0].json["error"]["evalue"] == "7");
  CHECK(r.of_type("error")[0].json["error"]["ename"] == "CommandExecError");
  r = run_in(d, sid, {{"command", "printf 'a\\n\\nb'; false"}});
  CHECK(stdout_of(r) == std::vector<std::string>{"a", "b"});
  CHECK(r.events.back().json["error"]["evalue"] == "1");
  r = run_in(d, sid, {{"command", "true"}});
  CHECK(r.events.back().type() == "execution_complete");
  CHECK(r.events.back().json["exit_code"] == 0);
}

TEST_CASE("a run's timeout interrupts that run only; the session and its state survive") {
  DaemonProcess d({"--kill-grace", "300ms"});
  const auto sid = create_session(d);
  run_in(d, sid, {{"command", "kept=yes"}});
  const auto t0 = std::chrono::steady_clock::now();
  auto r = run_in(d, sid, {{"command", "echo start; while true; do sleep 1; done; echo never"}, {"timeout", 300}});
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(3));
  CHECK(stdout_of(r) == std::vector<std::string>{"start"});
  REQUIRE(r.events.back().type() == "error");
  CHECK(r.events.back().json["error"]["traceback"][0].get<std::string>().find("timeout after 300 ms") == 0);
  // A child that ignores SIGINT is stopped with SIGTERM, still without losing the shell.
  r = run_in(d, sid, {{"command", "trap '' INT; sleep 30"}, {"timeout", 200}});
  CHECK(r.events.back().type() == "error");
  r = run_in(d, sid, {{"command", "echo $kept"}});
  CHECK(stdout_of(r) == std::vector<std::string>{"yes"});
  CHECK(r.events.back().type() == "execution_complete");
}

TEST_CASE("DELETE /session ends the shell and its children; the id is then unknown") {
  DaemonProcess d;
  const auto sid = create_session(d);
  auto r = run_in(d, sid, {{"command", "sleep 1004 & echo started"}});
  CHECK(stdout_of(r) == std::vector<std::string>{"started"});
  auto del = d.client()->Delete("/session/" + sid);
  REQUIRE(del);
  CHECK(del->status == 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto procs = json::parse(d.client()->Get("/processes")->body);
  for (const auto& p : procs) CHECK(p["command"].get<std::string>().find("sleep 1004") == std::string::npos);
  check_error(d.client()->Post("/session/" + sid + "/run", R"({"command":"echo x"})", "application/json"), 404,
              "CONTEXT_NOT_FOUND", sid);
  check_error(d.client()->Delete("/session/" + sid), 404, "CONTEXT_NOT_FOUND", sid);
  // DELETE /command?id=<session> ends a session too (the contract's interrupt route).
  const auto other = create_session(d);
  CHECK(d.client()->Delete("/command?id=" + other)->status == 200);
  check_error(d.client()->Delete("/session/" + other), 404, "CONTEXT_NOT_FOUND", other);
}

TEST_CASE("session bad input is a 4xx JSON error") {
  DaemonProcess d;
  const auto sid = create_session(d);
  auto post = [&](const std::string& path, const std::string& body) {
    return d.client()->Post(path, body, "application/json");
  };
  check_error(post("/session", "{bad"), 400, "INVALID_REQUEST_BODY", "JSON");
  check_error(post("/session", R"({"cwd":5})"), 400, "INVALID_REQUEST_BODY", "cwd");
  check_error(post("/session/" + sid + "/run", R"({})"), 400, "INVALID_REQUEST_BODY", "command");
  check_error(post("/session/" + sid + "/run", R"({"command":"ls","cwd":"/no/such"})"), 400, "INVALID_REQUEST_BODY",
              "/no/such");
  check_error(post("/session/" + sid + "/run", R"({"command":"ls","timeout":-1})"), 400, "INVALID_REQUEST_BODY",
              "timeout");
  check_error(post("/session/nope/run", R"({"command":"ls"})"), 404, "CONTEXT_NOT_FOUND", "nope");
  // A session runs one command at a time.
  std::thread slow([&] { run_in(d, sid, {{"command", "sleep 1"}}); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  check_error(post("/session/" + sid + "/run", R"({"command":"echo x"})"), 409, "CONFLICT", "busy");
  slow.join();
}

TEST_CASE("GET /processes lists what runs, DELETE signals one, pid 1 and the daemon are refused") {
  DaemonProcess d;
  pid_t child = fork();
  if (child == 0) {
    execl("/bin/sleep", "sleep", "1005", nullptr);
    _exit(127);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto list = d.client()->Get("/processes");
  REQUIRE(list);
  REQUIRE(list->status == 200);
  bool found = false;
  for (const auto& p : json::parse(list->body)) {
    if (p["pid"] != child) continue;
    found = true;
    CHECK(p["ppid"] == getpid());
    CHECK(p["command"] == "sleep 1005");
    CHECK(p["state"].get<std::string>().size() == 1);
    CHECK(p["user"].is_string());
    CHECK(p["rss_bytes"].get<uint64_t>() > 0);
    CHECK(p["cpu_percent"].is_number());
    CHECK(p["started_at"].get<std::string>().find('T') != std::string::npos);
  }
  CHECK(found);
  auto del = d.client()->Delete("/processes/" + std::to_string(child) + "?signal=TERM");
  REQUIRE(del);
  CHECK(del->status == 200);
  int status = 0;
  CHECK(waitpid(child, &status, 0) == child);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGTERM);
  check_error(d.client()->Delete("/processes/1"), 403, "FORBIDDEN", "pid 1");
  check_error(d.client()->Delete("/processes/" + std::to_string(d.pid())), 403, "FORBIDDEN", "daemon");
  check_error(d.client()->Delete("/processes/" + std::to_string(child)), 404, "NOT_FOUND", std::to_string(child));
  check_error(d.client()->Delete("/processes/12?signal=NOPE"), 400, "INVALID_REQUEST_BODY", "NOPE");
  check_error(d.client()->Delete("/processes/abc"), 400, "INVALID_REQUEST_BODY", "abc");
}
