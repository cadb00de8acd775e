// /code against real ipykernel kernels (Debian's python3-ipykernel): results, streams,
// errors, plots, persistence and isolation, interrupts and timeouts, kernel death and
// restart, queueing, default contexts, bad input and shutdown.
#include <doctest/doctest.h>

#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
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
namespace fs = std::filesystem;

namespace {

std::string create_context(const DaemonProcess& d, const std::string& language = "python") {
  auto r = d.client()->Post("/code/context", json{{"language", language}}.dump(), "application/json");
  REQUIRE(r);
  INFO(r->body);
  REQUIRE(r->status == 200);
  return json::parse(r->body)["id"];
}

SseResponse run(const DaemonProcess& d, const std::string& code, const json& context, int timeout_ms = 0,
                std::function<bool(const execd::test::SseEvent&)> on_event = nullptr) {
  SseRequest req;
  req.method = "POST";
  req.path = "/code";
  json body = {{"code", code}, {"context", context}};
  if (timeout_ms > 0) body["timeout"] = timeout_ms;
  req.body = body.dump();
  req.on_event = std::move(on_event);
  return sse_request(d.port(), req);
}

std::string stdout_of(const SseResponse& r) {
  std::string out;
  for (const auto& e : r.of_type("stdout")) out += e.json.value("text", "");
  return out;
}


int kernels_running() {
  int n = 0;
  for (const auto& e : fs::directory_iterator("/proc")) {
    if (!std::isdigit(static_cast<unsigned char>(e.path().filename().string()[0]))) continue;
    std::ifstream in(e.path() / "cmdline");
    std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmd.find("execd-kernel-") != std::string::npos) ++n;
  }
  return n;
}

}  // namespace

TEST_CASE("results, streams and errors reach the client in the order clients expect") {
  DaemonProcess d;
  const auto id = create_context(d);
  auto r = run(d, "1+1", {{"id", id}});
  REQUIRE(r.status == 200);
  REQUIRE(r.events.size() == 4);
  CHECK(r.events[0].type() == "init");
  CHECK(r.events[0].json["text"] == id);
  CHECK(r.events[1].type() == "execution_count");
  CHECK(r.events[2].type() == "result");
  CHECK(r.events[2].json["results"]["text"] == "2");
  CHECK(r.events[3].type() == "execution_complete");
  CHECK(r.events[3].json.contains("duration_ms"));
  CHECK(r.events[3].json.contains("cpu_time_ms"));
  CHECK(r.events[3].json["peak_memory_mb"].get<double>() > 1.0);

  r = run(d, "print('a'); import sys; print('b', file=sys.stderr)", {{"id", id}});
  CHECK(stdout_of(r) == "a\n");
  CHECK(r.of_type("stderr").at(0).json["text"] == "b\n");

  r = run(d, "1/0", {{"id", id}});
  REQUIRE(r.events.size() == 4);
  CHECK(r.events[1].type() == "status");
  CHECK(r.events[1].json["text"] == "error");
  CHECK(r.events[2].json["error"]["ename"] == "ZeroDivisionError");
  CHECK(r.events[2].json["error"]["evalue"] == "division by zero");
  CHECK_FALSE(r.events[2].json["error"]["traceback"].empty());
  CHECK(r.events[3].type() == "execution_complete");

  r = run(d, "input('name? ')", {{"id", id}});
  CHECK(r.of_type("error").at(0).json["error"]["ename"] == "StdinNotImplementedError");
}

TEST_CASE("output streams while the cell runs") {
  DaemonProcess d;
  const auto id = create_context(d);
  std::vector<std::chrono::steady_clock::time_point> arrivals;
  auto r = run(d, "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.5)", {{"id", id}}, 0,
               [&](const execd::test::SseEvent& e) {
                 if (e.type() == "stdout") arrivals.push_back(std::chrono::steady_clock::now());
                 return true;
               });
  CHECK(stdout_of(r) == "0\n1\n2\n");
  REQUIRE(arrivals.size() == 3);
  CHECK(arrivals[2] - arrivals[0] > std::chrono::milliseconds(800));
}

TEST_CASE("plots and display() arrive as results; state persists in a context and is isolated between contexts") {
  DaemonProcess d;
  const auto a = create_context(d);
  const auto b = create_context(d);
  auto r = run(d, "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()", {{"id", a}});
  REQUIRE_FALSE(r.of_type("result").empty());
  const std::string png = r.of_type("result")[0].json["results"].value("image/png", "");
  CHECK(png.rfind("iVBORw0KGgo", 0) == 0);  // base64 of the PNG signature
  r = run(d, "from IPython.display import display, HTML\ndisplay(HTML('<b>hi</b>'))", {{"id", a}});
  CHECK(r.of_type("result").at(0).json["results"]["text/html"] == "<b>hi</b>");
  run(d, "secret = 7\ndef twice(x): return 2 * x\nimport json", {{"id", a}});
  r = run(d, "twice(secret), json.dumps(1)", {{"id", a}});
  CHECK(r.of_type("result").at(0).json["results"]["text"] == "(14, '1')");
  r = run(d, "secret", {{"id", b}});
  CHECK(r.of_type("error").at(0).json["error"]["ename"] == "NameError");
}

TEST_CASE("DELETE /code interrupts a running cell within a second; timeout does the same; the context lives on") {
  DaemonProcess d;
  const auto id = create_context(d);
  run(d, "kept = 'yes'", {{"id", id}});
  std::thread interrupter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(700));
    d.client()->Delete(("/code?id=" + id).c_str());
  });
  const auto t0 = std::chrono::steady_clock::now();
  auto r = run(d, "while True: pass", {{"id", id}});
  interrupter.join();
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(1700));
  CHECK(r.of_type("error").at(0).json["error"]["ename"] == "KeyboardInterrupt");
  CHECK(r.events.back().type() == "execution_complete");
  r = run(d, "import time\ntime.sleep(30)", {{"id", id}}, 500);
  CHECK(r.of_type("error").at(0).json["error"]["ename"] == "KeyboardInterrupt");
  r = run(d, "kept", {{"id", id}});
  CHECK(r.of_type("result").at(0).json["results"]["text"] == "'yes'");
  check_error(d.client()->Delete(("/code?id=" + id).c_str()), 409, "CONFLICT", "not running");
}

TEST_CASE("different contexts run in parallel") {
  DaemonProcess d;
  const auto a = create_context(d);
  const auto b = create_context(d);
  const auto t0 = std::chrono::steady_clock::now();
  std::string out_b;
  std::thread other([&] { out_b = stdout_of(run(d, "import time\ntime.sleep(1)\nprint('b')", {{"id", b}})); });
  const auto out_a = stdout_of(run(d, "import time\ntime.sleep(1)\nprint('a')", {{"id", a}}));
  other.join();
  CHECK(out_a == "a\n");
  CHECK(out_b == "b\n");
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(1800));  // not one after the other
}

TEST_CASE("a kernel that dies ends its stream with an error; the next run restarts it and says so") {
  DaemonProcess d;
  const auto id = create_context(d);
  run(d, "x = 1", {{"id", id}});
  auto r = run(d, "import os\nos._exit(1)", {{"id", id}});
  REQUIRE_FALSE(r.events.empty());
  CHECK(r.events.back().type() == "error");
  CHECK(r.events.back().json["error"]["ename"] == "DeadKernelError");
  r = run(d, "print('back')", {{"id", id}});
  REQUIRE(r.of_type("status").size() == 1);
  CHECK(r.of_type("status")[0].json["text"].get<std::string>().find("state was lost") != std::string::npos);
  CHECK(stdout_of(r) == "back\n");
  r = run(d, "x", {{"id", id}});
  CHECK(r.of_type("error").at(0).json["error"]["ename"] == "NameError");
  // An explicit restart resets the state too.
  run(d, "y = 2", {{"id", id}});
  CHECK(d.client()->Post(("/code/contexts/" + id + "/restart").c_str(), "", "application/json")->status == 200);
  r = run(d, "y", {{"id", id}});
  CHECK(r.of_type("error").at(0).json["error"]["ename"] == "NameError");
}

TEST_CASE("a kernel that stops answering heartbeats is declared dead within seconds") {
  DaemonProcess d;
  const auto id = create_context(d);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = run(d, "import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)", {{"id", id}});
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(12));
  REQUIRE_FALSE(r.events.empty());
  CHECK(r.events.back().json["error"]["ename"] == "DeadKernelError");
  CHECK(r.events.back().json["error"]["evalue"].get<std::string>().find("heartbeat") != std::string::npos);
  r = run(d, "print('alive again')", {{"id", id}});
  CHECK(stdout_of(r) == "alive again\n");
}

TEST_CASE("requests to one context queue in order; default contexts are made on first use and listed") {
  DaemonProcess d;
  std::string first_out;
  std::thread slow([&] { first_out = stdout_of(run(d, "import time\ntime.sleep(1)\nprint('first')", {{"language", "python"}})); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto t0 = std::chrono::steady_clock::now();
  auto r = run(d, "print('second')", {{"language", "python"}});
  slow.join();
  CHECK(first_out == "first\n");
  CHECK(stdout_of(r) == "second\n");
  CHECK(std::chrono::steady_clock::now() - t0 > std::chrono::milliseconds(500));  // it waited its turn
  auto list = json::parse(d.client()->Get("/code/contexts?language=python")->body);
  REQUIRE(list.size() == 1);
  CHECK(list[0]["language"] == "python");
  CHECK(d.client()->Get(("/code/contexts/" + list[0]["id"].get<std::string>()).c_str())->status == 200);
  CHECK(d.client()->Delete("/code/contexts?language=python")->status == 200);
  CHECK(json::parse(d.client()->Get("/code/contexts")->body).empty());
  // No language and no id: a shell command, as the contract says.
  SseRequest req;
  req.method = "POST";
  req.path = "/code";
  req.body = R"({"code":"echo from-shell"})";
  auto shell = sse_request(d.port(), req);
  CHECK(shell.of_type("stdout").at(0).json["text"] == "from-shell");
}

TEST_CASE("bad input is a 4xx; a kernel that cannot start is a 5xx naming its kernelspec") {
  execd::test::TempDir jp;
  jp.write("kernels/broken/kernel.json", R"({"argv":["/nonexistent/kernel","-f","{connection_file}"],"language":"brokenlang"})");
  // The fixture appends extra_env after the inherited environment, where getenv would
  // find meson's JUPYTER_PATH first: set ours (ahead of it) in the inherited one instead.
  const char* inherited = std::getenv("JUPYTER_PATH");
  const std::string saved = inherited != nullptr ? inherited : "";
  ::setenv("JUPYTER_PATH", (jp.str() + (saved.empty() ? "" : ":" + saved)).c_str(), 1);
  DaemonProcess d;
  if (inherited != nullptr) {
    ::setenv("JUPYTER_PATH", saved.c_str(), 1);
  } else {
    ::unsetenv("JUPYTER_PATH");
  }
  auto post = [&](const std::string& path, const std::string& body) { return d.client()->Post(path.c_str(), body, "application/json"); };
  check_error(post("/code", R"({"code":"","context":{"language":"python"}})"), 400, "INVALID_REQUEST_BODY", "code");
  check_error(post("/code", R"({"code":"1","context":{"id":"nope"}})"), 404, "CONTEXT_NOT_FOUND", "nope");
  check_error(post("/code", R"({"code":)"), 400, "INVALID_REQUEST_BODY", "JSON");
  check_error(post("/code", "{\"code\":\"\xff\xfe\",\"context\":{\"language\":\"python\"}}"), 400, "INVALID_REQUEST_BODY", "UTF-8");
  check_error(post("/code/context", R"({"language":"cobol"})"), 400, "INVALID_REQUEST_BODY", "python");
  check_error(post("/code/context", R"({})"), 400, "INVALID_REQUEST_BODY", "language");
  const auto t0 = std::chrono::steady_clock::now();
  check_error(post("/code/context", R"({"language":"brokenlang"})"), 503, "UNAVAILABLE", "broken");
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
  const auto id = create_context(d);
  CHECK(d.client()->Delete(("/code/contexts/" + id).c_str())->status == 200);
  check_error(post("/code", json{{"code", "1"}, {"context", {{"id", id}}}}.dump()), 404, "CONTEXT_NOT_FOUND", id);
  check_error(d.client()->Delete(("/code/contexts/" + id).c_str()), 404, "CONTEXT_NOT_FOUND", id);
  check_error(d.client()->Delete("/code/contexts"), 400, "MISSING_QUERY", "language");
  check_error(d.client()->Delete("/code"), 400, "MISSING_QUERY", "id");
}

TEST_CASE("JavaScript and TypeScript run in tslab kernels (installed by make kernels)") {
  DaemonProcess d;
  const auto js = create_context(d, "javascript");
  auto r = run(d, "let y = 20; console.log(y * 2)", {{"id", js}});
  CHECK(stdout_of(r) == "40\n");
  CHECK(r.events.back().type() == "execution_complete");
  r = run(d, "console.log(y + 1)", {{"id", js}});
  CHECK(stdout_of(r) == "21\n");
  const auto ts = create_context(d, "typescript");
  r = run(d, "const z: number = 5; console.log(z * 3)", {{"id", ts}});
  CHECK(stdout_of(r) == "15\n");
  r = run(d, "const bad: number = 'text'", {{"id", ts}});
  CHECK_FALSE(r.of_type("error").empty());
  CHECK(r.events.back().type() == "execution_complete");
}

TEST_CASE("bash contexts are native bash sessions with the same events") {
  DaemonProcess d;
  const auto id = create_context(d, "bash");
  auto r = run(d, "cd /tmp; X=5; echo hi", {{"id", id}});
  CHECK(r.of_type("stdout").at(0).json["text"] == "hi");
  CHECK(r.events.back().type() == "execution_complete");
  r = run(d, "echo $X $(pwd); exit_code_test() { return 3; }; exit_code_test", {{"id", id}});
  CHECK(r.of_type("stdout").at(0).json["text"] == "5 /tmp");
  CHECK(r.events.back().json["error"]["evalue"] == "3");
  bool listed = false;
  for (const auto& c : json::parse(d.client()->Get("/code/contexts?language=bash")->body)) listed |= c["id"] == id;
  CHECK(listed);
  // Without an id, bash runs in a default session that keeps its state too.
  run(d, "Y=default", {{"language", "bash"}});
  r = run(d, "echo $Y", {{"language", "bash"}});
  CHECK(r.of_type("stdout").at(0).json["text"] == "default");
  CHECK(d.client()->Delete(("/code/contexts/" + id).c_str())->status == 200);
  check_error(d.client()->Get(("/code/contexts/" + id).c_str()), 404, "CONTEXT_NOT_FOUND", id);
}

TEST_CASE("the warm pool makes the next context of a language immediate") {
  DaemonProcess d;
  create_context(d);  // the first is cold and asks for a warm one
  std::this_thread::sleep_for(std::chrono::seconds(3));
  const auto t0 = std::chrono::steady_clock::now();
  const auto id = create_context(d);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(300));
  auto r = run(d, "6*7", {{"id", id}});
  CHECK(r.of_type("result").at(0).json["results"]["text"] == "42");
}

TEST_CASE("no kernel outlives the daemon") {
  const int before = kernels_running();
  {
    DaemonProcess d;
    create_context(d);
    create_context(d);
    CHECK(kernels_running() >= before + 2);  // two contexts, and maybe a warm kernel
    CHECK(d.stop(SIGTERM, std::chrono::seconds(10)) == 0);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(kernels_running() == before);
}
