// /command as clients meet it, against real processes: event order and terminal rules,
// line splitting, background status/logs/cursors, interrupt and timeout of whole process
// groups, stdin, reattach, bounded memory, bad input, and 500 commands at once.
#include <doctest/doctest.h>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cstdio>
#include <iterator>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "support/daemon_process.hpp"
#include "support/http_checks.hpp"
#include "support/sse_reader.hpp"
#include "support/temp_dir.hpp"

using execd::test::check_error;
using execd::test::DaemonProcess;
using execd::test::shell_output;
using execd::test::sse_request;
using execd::test::SseRequest;
using execd::test::SseResponse;
using nlohmann::json;

namespace {

SseResponse run(const DaemonProcess& d, const json& body) {
  SseRequest req;
  req.method = "POST";
  req.path = "/command";
  req.body = body.dump();
  return sse_request(d.port(), req);
}

std::vector<std::string> texts(const SseResponse& r, const std::string& type) {
  std::vector<std::string> out;
  for (const auto& e : r.of_type(type)) out.push_back(e.json.value("text", ""));
  return out;
}

std::string start_background(const DaemonProcess& d, json body) {
  body["background"] = true;
  auto r = run(d, body);
  REQUIRE(r.status == 200);
  REQUIRE(r.events.size() == 2);
  CHECK(r.events[0].type() == "init");
  CHECK(r.events[1].type() == "execution_complete");
  return r.events[0].json.value("text", "");
}

json status_of(const DaemonProcess& d, const std::string& id) {
  auto r = d.client()->Get("/command/status/" + id);
  REQUIRE(r);
  REQUIRE(r->status == 200);
  return json::parse(r->body);
}

json wait_finished(const DaemonProcess& d, const std::string& id, std::chrono::seconds limit = std::chrono::seconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    auto s = status_of(d, id);
    if (!s.value("running", true)) return s;
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}


// Live processes whose command line contains `marker` (zombies have none).
int count_processes(const std::string& marker) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    if (!std::isdigit(static_cast<unsigned char>(e.path().filename().string()[0]))) continue;
    std::ifstream in(e.path() / "cmdline", std::ios::binary);
    std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (auto& c : cmd) {
      if (c == '\0') c = ' ';
    }
    if (cmd.find(marker) != std::string::npos) ++n;
  }
  return n;
}

// Zombie children of `pid`.
int zombies_of(pid_t pid) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    if (!std::isdigit(static_cast<unsigned char>(e.path().filename().string()[0]))) continue;
    std::ifstream in(e.path() / "stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    char state = '?';
    int ppid = 0;
    if (std::sscanf(stat.c_str() + close + 1, " %c %d", &state, &ppid) == 2 && ppid == pid && state == 'Z') ++n;
  }
  return n;
}

}  // namespace

TEST_CASE("foreground: init, one event per line as it comes, exactly one terminal event") {
  DaemonProcess d;
  SUBCASE("exit 0 ends with execution_complete and accounting") {
    auto r = run(d, {{"command", "echo 'Hello OpenSandbox E2E'"}});
    REQUIRE(r.status == 200);
    CHECK(r.headers.find("Content-Type")->second.find("text/event-stream") == 0);
    REQUIRE(r.events.size() == 3);
    CHECK(r.events[0].type() == "init");
    CHECK(r.events[0].json["text"].get<std::string>().size() == 32);
    CHECK(texts(r, "stdout") == std::vector<std::string>{"Hello OpenSandbox E2E"});
    CHECK(r.of_type("stderr").empty());
    const auto done = r.events[2].json;
    CHECK(done["type"] == "execution_complete");
    CHECK(done["exit_code"] == 0);
    CHECK(done.contains("duration_ms"));
    CHECK(done.contains("cpu_time_ms"));
    CHECK(done["peak_memory_mb"].get<double>() > 0.0);
    CHECK(r.ended);
    for (size_t i = 0; i < r.events.size(); ++i) {
      CHECK(r.events[i].id == std::to_string(i + 1));
      CHECK(r.events[i].json["timestamp"].is_number_integer());
    }
  }
  SUBCASE("a non-zero exit ends with error CommandExecError and never complete") {
    auto r = run(d, {{"command", "echo x >&2; exit 7"}});
    CHECK(texts(r, "stderr") == std::vector<std::string>{"x"});
    REQUIRE(r.of_type("error").size() == 1);
    CHECK(r.of_type("execution_complete").empty());
    const auto err = r.of_type("error")[0].json;
    CHECK(err["error"]["ename"] == "CommandExecError");
    CHECK(err["error"]["evalue"] == "7");
    CHECK(err["exit_code"] == 7);
    CHECK(r.events.back().type() == "error");
  }
  SUBCASE("an unknown command reports on stderr and fails") {
    auto r = run(d, {{"command", "no-such-command-xyz"}});
    REQUIRE_FALSE(texts(r, "stderr").empty());
    CHECK(texts(r, "stderr")[0].find("no-such-command-xyz") != std::string::npos);
    CHECK(r.of_type("error").at(0).json["error"]["evalue"] == "127");
  }
  SUBCASE("output arrives while the command runs, not after") {
    const auto t0 = std::chrono::steady_clock::now();
    std::chrono::milliseconds first_line{0};
    SseRequest req;
    req.method = "POST";
    req.path = "/command";
    req.body = json{{"command", "echo early; sleep 1.5; echo late"}}.dump();
    req.on_event = [&](const execd::test::SseEvent& e) {
      if (e.type() == "stdout" && first_line.count() == 0) {
        first_line = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
      }
      return true;
    };
    auto r = sse_request(d.port(), req);
    CHECK(texts(r, "stdout") == std::vector<std::string>{"early", "late"});
    CHECK(first_line.count() > 0);
    CHECK(first_line.count() < 1000);
  }
}

TEST_CASE("line splitting: blank lines, CRLF, lone CR, a last line without newline, bad UTF-8") {
  DaemonProcess d;
  auto r = run(d, {{"command", "printf 'a\\n\\nb\\n\\n\\nc\\n'"}});
  CHECK(texts(r, "stdout") == std::vector<std::string>{"a", "\n", "b", "\n", "\n", "c"});
  r = run(d, {{"command", "printf 'one\\r\\ntwo\\r\\n'; printf 'three\\rfour'"}});
  CHECK(texts(r, "stdout") == std::vector<std::string>{"one", "two", "three", "four"});
  // A CRLF split across two writes still counts once.
  r = run(d, {{"command", "printf 'x\\r'; sleep 0.2; printf '\\ny\\n'"}});
  CHECK(texts(r, "stdout") == std::vector<std::string>{"x", "y"});
  r = run(d, {{"command", "printf 'ok\\n\\377\\376bad\\n'"}});
  REQUIRE(texts(r, "stdout").size() == 2);
  CHECK(texts(r, "stdout")[0] == "ok");
  CHECK(texts(r, "stdout")[1].find("bad") != std::string::npos);
  CHECK(r.events.back().type() == "execution_complete");
}

TEST_CASE("cwd, envs, EXECD_ENVS and stdin from the request; never the daemon's stdin") {
  execd::test::TempDir dir;
  const auto envs = dir.write("envs", "# injected\nFROM_FILE=file-$HOME\nBOTH=file\n");
  DaemonProcess d({}, {"EXECD_ENVS=" + envs.string()});
  auto r = run(d, {{"command", "pwd"}, {"cwd", dir.str()}});
  CHECK(texts(r, "stdout") == std::vector<std::string>{std::filesystem::canonical(dir.path()).string()});
  r = run(d, {{"command", "echo \"[$E2E_UNSET][$MINE][$BOTH][${FROM_FILE%%-*}]\""}, {"envs", {{"MINE", "v1"}, {"BOTH", "req"}}}});
  CHECK(texts(r, "stdout") == std::vector<std::string>{"[][v1][req][file]"});
  r = run(d, {{"command", "cat"}, {"stdin", "fed\nin\n"}});
  CHECK(texts(r, "stdout") == std::vector<std::string>{"fed", "in"});
  // No stdin given: /dev/null, so `cat` ends at once instead of hanging.
  r = run(d, {{"command", "cat; readlink /proc/self/fd/0"}});
  CHECK(texts(r, "stdout") == std::vector<std::string>{"/dev/null"});
}

TEST_CASE("background: status, then logs by byte cursor that never repeat or skip, also while writing") {
  DaemonProcess d;
  const std::string id = start_background(d, {{"command", "for i in $(seq 1 400); do echo line-$i; echo err-$i >&2; sleep 0.005; done"}});
  auto s = status_of(d, id);
  CHECK(s["id"] == id);
  CHECK(s["content"].get<std::string>().find("seq 1 400") != std::string::npos);
  CHECK(s.contains("started_at"));
  std::string collected;
  uint64_t cursor = 0;
  int polls = 0;
  bool finished = false;
  while (!finished) {
    finished = !status_of(d, id).value("running", true);
    auto r = d.client()->Get("/command/" + id + "/logs?cursor=" + std::to_string(cursor));
    REQUIRE(r);
    REQUIRE(r->status == 200);
    const uint64_t next = std::stoull(r->get_header_value("EXECD-COMMANDS-TAIL-CURSOR"));
    CHECK(next == cursor + r->body.size());
    collected += r->body;
    cursor = next;
    ++polls;
  }
  CHECK(polls > 3);
  std::string expected;
  for (int i = 1; i <= 400; ++i) expected += "line-" + std::to_string(i) + "\n" + "err-" + std::to_string(i) + "\n";
  // stdout and stderr interleave in write order; each line arrives exactly once.
  CHECK(collected.size() == expected.size());
  for (int i = 1; i <= 400; ++i) {
    const auto line = "line-" + std::to_string(i) + "\n";
    const auto pos = collected.find(line);
    CHECK(pos != std::string::npos);
    CHECK(collected.find(line, pos + 1) == std::string::npos);
  }
  s = wait_finished(d, id);
  CHECK(s["exit_code"] == 0);
  CHECK(s.contains("finished_at"));
  // A cursor past the end is an empty body that echoes the cursor.
  auto past = d.client()->Get("/command/" + id + "/logs?cursor=999999999");
  CHECK(past->body.empty());
  CHECK(past->get_header_value("EXECD-COMMANDS-TAIL-CURSOR") == "999999999");
}

TEST_CASE("DELETE /command interrupts the whole process group, grandchildren included") {
  DaemonProcess d({"--kill-grace", "300ms"});
  const std::string id = start_background(d, {{"command", "sleep 1001 & sleep 1001; wait"}});
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(count_processes("sleep 1001") == 3);  // the shell and both sleeps
  auto del = d.client()->Delete("/command?id=" + id);
  REQUIRE(del);
  CHECK(del->status == 200);
  auto s = wait_finished(d, id);
  CHECK(s["exit_code"] == -1);
  CHECK(s["error"].get<std::string>().find("signal") != std::string::npos);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(count_processes("sleep 1001") == 0);
  // The stream of an interrupted command ends with error evalue -1.
  SseRequest replay;
  replay.path = "/command/" + id + "/events";
  auto events = sse_request(d.port(), replay);
  REQUIRE_FALSE(events.events.empty());
  CHECK(events.events.back().type() == "error");
  CHECK(events.events.back().json["error"]["evalue"] == "-1");
  // Interrupting it again: it is no longer running.
  check_error(d.client()->Delete("/command?id=" + id), 409, "CONFLICT", "not running");
}

TEST_CASE("timeout interrupts the group and says so in the stream") {
  DaemonProcess d({"--kill-grace", "300ms"});
  const auto t0 = std::chrono::steady_clock::now();
  auto r = run(d, {{"command", "echo before; sleep 1002 & sleep 1002; wait"}, {"timeout", 200}});
  const auto took = std::chrono::steady_clock::now() - t0;
  CHECK(took < std::chrono::seconds(3));
  CHECK(texts(r, "stdout") == std::vector<std::string>{"before"});
  REQUIRE(r.events.back().type() == "error");
  CHECK(r.events.back().json["error"]["evalue"] == "-1");
  CHECK(r.events.back().json["error"]["traceback"][0].get<std::string>().find("timeout after 200 ms") == 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(count_processes("sleep 1002") == 0);
}

TEST_CASE("no zombies and no leftovers after 100 interrupted commands") {
  DaemonProcess d({"--kill-grace", "200ms"});
  std::vector<std::string> ids;
  for (int i = 0; i < 100; ++i) ids.push_back(start_background(d, {{"command", "sleep 1003 & sleep 1003 & wait"}}));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (size_t i = static_cast<size_t>(t); i < ids.size(); i += 4) d.client()->Delete("/command?id=" + ids[i]);
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& id : ids) wait_finished(d, id);
  // Orphaned grandchildren come back to the daemon (a subreaper) and are reaped too.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  CHECK(count_processes("sleep 1003") == 0);
  CHECK(zombies_of(d.pid()) == 0);
  CHECK(d.client()->Get("/ping")->status == 200);
}

TEST_CASE("interactive stdin drives a read loop and a python REPL in order") {
  DaemonProcess d;
  SUBCASE("a read loop answers each line and ends on close") {
    const std::string id = start_background(d, {{"command", "while read -r l; do echo \"got:$l\"; done; echo bye"}, {"stdin_open", true}});
    for (const char* line : {"one\n", "two\n", "three\n"}) {
      auto w = d.client()->Post("/command/" + id + "/stdin", line, "application/octet-stream");
      REQUIRE(w);
      CHECK(w->status == 200);
    }
    d.client()->Post("/command/" + id + "/stdin?close=true", "", "application/octet-stream");
    wait_finished(d, id);
    CHECK(d.client()->Get("/command/" + id + "/logs")->body == "got:one\ngot:two\ngot:three\nbye\n");
    check_error(d.client()->Post("/command/" + id + "/stdin", "late\n", "text/plain"), 409, "CONFLICT", "not open");
  }
  SUBCASE("a python REPL keeps state between inputs") {
    const std::string id = start_background(d, {{"command", "python3 -u -i -q 2>&1"}, {"stdin_open", true}});
    d.client()->Post("/command/" + id + "/stdin", "x = 20\n", "text/plain");
    d.client()->Post("/command/" + id + "/stdin", "print(x + 22)\n", "text/plain");
    d.client()->Post("/command/" + id + "/stdin?close=true", "", "text/plain");
    auto s = wait_finished(d, id);
    CHECK(s["exit_code"] == 0);
    CHECK(d.client()->Get("/command/" + id + "/logs")->body.find("42") != std::string::npos);
  }
}

TEST_CASE("a client that disconnects does not kill its command; it reattaches after Last-Event-ID") {
  DaemonProcess d;
  SseRequest req;
  req.method = "POST";
  req.path = "/command";
  req.body = json{{"command", "for i in 1 2 3 4 5; do echo n$i; sleep 0.2; done"}}.dump();
  req.on_event = [](const execd::test::SseEvent& e) { return e.type() != "stdout"; };  // leave after the first line
  auto first = sse_request(d.port(), req);
  REQUIRE(first.events.size() >= 2);
  const std::string id = first.events[0].json["text"];
  SseRequest again;
  again.path = "/command/" + id + "/events";
  again.headers = {{"Last-Event-ID", "2"}};
  auto rest = sse_request(d.port(), again);
  REQUIRE_FALSE(rest.events.empty());
  CHECK(rest.events[0].id == "3");
  CHECK(texts(rest, "stdout") == std::vector<std::string>{"n2", "n3", "n4", "n5"});
  CHECK(rest.events.back().type() == "execution_complete");
}

TEST_CASE("output is bounded in memory and none of it is lost") {
  DaemonProcess d;
  const long rss_before = d.rss_kib();
  const std::string id = start_background(d, {{"command", "yes 0123456789abcdef | head -c 200000000"}});
  wait_finished(d, id, std::chrono::seconds(120));
  const long rss_after = d.rss_kib();
  INFO("rss before " << rss_before << " KiB, after " << rss_after << " KiB");
  CHECK(rss_after - rss_before < 24 * 1024);
  auto tail = d.client()->Get("/command/" + id + "/logs?cursor=199999983");
  REQUIRE(tail);
  std::string expected;
  for (uint64_t k = 199999983; k < 200000000; ++k) expected += "0123456789abcdef\n"[k % 17];
  CHECK(tail->body == expected);
  CHECK(tail->get_header_value("EXECD-COMMANDS-TAIL-CURSOR") == "200000000");
  // Millions of line events were kept (spilled to disk) up to --event-log-max; then one
  // notice, and the terminal event last.
  auto ev = d.client()->Get("/executions/" + id);
  REQUIRE(ev);
  const auto last = json::parse(ev->body)["last_event_id"].get<uint64_t>();
  CHECK(last > 1000000);
  SseRequest tail_events;
  tail_events.path = "/command/" + id + "/events";
  tail_events.headers = {{"Last-Event-ID", std::to_string(last - 2)}};
  auto end = sse_request(d.port(), tail_events);
  REQUIRE(end.events.size() == 2);
  CHECK(end.events[0].json["text"].get<std::string>().find("event log full") == 0);
  CHECK(end.events[1].type() == "execution_complete");
}

TEST_CASE("bad input is a 4xx JSON error naming the problem") {
  DaemonProcess d;
  auto post = [&](const std::string& body) { return d.client()->Post("/command", body, "application/json"); };
  check_error(post(R"({"command":""})"), 400, "INVALID_REQUEST_BODY", "command");
  check_error(post(R"({"cwd":"/tmp"})"), 400, "INVALID_REQUEST_BODY", "command");
  check_error(post(R"({"command":"ls","cwd":"/no/such/dir"})"), 400, "INVALID_REQUEST_BODY", "/no/such/dir");
  check_error(post(R"({"command":"ls","timeout":-5})"), 400, "INVALID_REQUEST_BODY", "timeout");
  check_error(post(R"({"command":"ls","timeout":"soon"})"), 400, "INVALID_REQUEST_BODY", "timeout");
  check_error(post(R"({"command":"id","uid":4000000000})"), 400, "INVALID_REQUEST_BODY", "uid");
  check_error(post(R"({"command":"id","uid":3999999})"), 400, "INVALID_REQUEST_BODY", "uid 3999999");
  check_error(post(R"({"command":"id","gid":0})"), 400, "INVALID_REQUEST_BODY", "uid is required");
  check_error(post(R"({"command":"ls","envs":{"A":1}})"), 400, "INVALID_REQUEST_BODY", "envs.A");
  check_error(post(R"({"command": )"), 400, "INVALID_REQUEST_BODY", "not valid JSON");
  check_error(post(R"([1,2])"), 400, "INVALID_REQUEST_BODY", "JSON object");
  check_error(d.client()->Get("/command/status/nope"), 404, "NOT_FOUND", "nope");
  check_error(d.client()->Get("/command/nope/logs"), 404, "NOT_FOUND", "nope");
  check_error(d.client()->Delete("/command?id=nope"), 404, "NOT_FOUND", "nope");
  check_error(d.client()->Delete("/command"), 400, "MISSING_QUERY", "id");
  CHECK(d.client()->Get("/ping")->status == 200);
}

TEST_CASE("uid switch runs the command as that user when the daemon is root") {
  if (geteuid() != 0) {
    FAIL("this test needs root (CI runs as root): cannot check the uid switch");
    return;
  }
  DaemonProcess d;
  auto r = run(d, {{"command", "id -u; id -g"}, {"uid", 65534}});
  CHECK(texts(r, "stdout") == std::vector<std::string>{"65534", "65534"});
  r = run(d, {{"command", "id -u; id -g"}, {"uid", 65534}, {"gid", 0}});
  CHECK(texts(r, "stdout") == std::vector<std::string>{"65534", "0"});
}

TEST_CASE("500 commands started at once all complete with their full output") {
  DaemonProcess d;
  constexpr int kCommands = 500;
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 50; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kCommands; i += 50) {
        auto r = run(d, {{"command", "seq 1 " + std::to_string(100 + i)}});
        const auto out = texts(r, "stdout");
        if (r.status == 200 && static_cast<int>(out.size()) == 100 + i && out.back() == std::to_string(100 + i) &&
            r.events.back().type() == "execution_complete") {
          ++good;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(good.load() == kCommands);
  CHECK(d.client()->Get("/ping")->status == 200);
}
