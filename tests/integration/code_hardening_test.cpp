// What one cell or one kernel can do to the daemon (issue 10, "Kernel output"): invalid
// UTF-8 in kernel messages, huge output, many kernels starting at once, an interrupt
// right after a cell starts, output racing `idle` under CPU load, oversized display_data,
// and where kernels and their kernelspecs live. Real daemon, real ipykernel/tslab kernels.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "support/daemon_process.hpp"
#include "support/proc_probe.hpp"
#include "support/sse_reader.hpp"
#include "support/temp_dir.hpp"

using execd::test::DaemonProcess;
using execd::test::sse_request;
using execd::test::SseRequest;
using execd::test::SseResponse;
using execd::test::status_kib;
using nlohmann::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

const std::string kReplacement = "\xEF\xBF\xBD";  // U+FFFD

std::string create_context(const DaemonProcess& d, const std::string& language = "python") {
  auto c = d.client();
  c->set_read_timeout(std::chrono::seconds(180));
  auto r = c->Post("/code/context", json{{"language", language}}.dump(), "application/json");
  REQUIRE(r);
  INFO(r->body);
  REQUIRE(r->status == 200);
  return json::parse(r->body)["id"];
}

SseResponse run(const DaemonProcess& d, const std::string& code, const std::string& context_id,
                std::function<bool(const execd::test::SseEvent&)> on_event = nullptr) {
  SseRequest req;
  req.method = "POST";
  req.path = "/code";
  req.body = json{{"code", code}, {"context", {{"id", context_id}}}}.dump();
  req.on_event = std::move(on_event);
  req.timeout = std::chrono::seconds(60);
  return sse_request(d.port(), req);
}

std::string text_of(const SseResponse& r, const std::string& type) {
  std::string out;
  for (const auto& e : r.of_type(type)) out += e.json.value("text", "");
  return out;
}

void require_ping(const DaemonProcess& d) {
  auto r = d.client()->Get("/ping");
  REQUIRE(r);
  CHECK(r->status == 200);
}

// Busy-loop processes that load every core while they live.
class CpuLoad {
 public:
  explicit CpuLoad(int n) {
    for (int i = 0; i < n; ++i) {
      const pid_t pid = ::fork();
      if (pid == 0) {
        ::execl("/bin/sh", "sh", "-c", "while :; do :; done", static_cast<char*>(nullptr));
        ::_exit(127);
      }
      if (pid > 0) pids_.push_back(pid);
    }
  }
  ~CpuLoad() {
    for (pid_t p : pids_) ::kill(p, SIGKILL);
    for (pid_t p : pids_) ::waitpid(p, nullptr, 0);
  }
  CpuLoad(const CpuLoad&) = delete;
  CpuLoad& operator=(const CpuLoad&) = delete;

 private:
  std::vector<pid_t> pids_;
};

}  // namespace

TEST_CASE("invalid UTF-8 from a kernel is repaired, not dropped: stream text and other messages") {
  DaemonProcess d;
  const auto id = create_context(d);
  // ipykernel sends a lone surrogate as the raw byte 0xFF (surrogateescape).
  auto r = run(d, "print('a\\udcffb')\nimport sys; sys.stderr.write('c\\udcffd\\n')", id);
  REQUIRE(r.ended);
  CHECK(text_of(r, "stdout") == "a" + kReplacement + "b\n");
  CHECK(text_of(r, "stderr") == "c" + kReplacement + "d\n");
  CHECK(r.of_type("execution_complete").size() == 1);
  // A display_data (parsed whole, not the stream fast path) with the same bytes.
  auto shown = run(d, "from IPython.display import display\ndisplay({'text/plain': 'q\\udcffr'}, raw=True)", id);
  REQUIRE(shown.ended);
  REQUIRE(shown.of_type("result").size() == 1);
  CHECK(shown.of_type("result")[0].json["results"]["text"] == "q" + kReplacement + "r");
  CHECK(d.log().find("dropped a message") == std::string::npos);
}

TEST_CASE("a 50 MB print reaches the client whole while the daemon stays small; the cap drops the rest with a notice") {
  DaemonProcess d;
  const auto id = create_context(d);
  REQUIRE(text_of(run(d, "print('warm')", id), "stdout") == "warm\n");
  const long hwm_before = status_kib(d.pid(), "VmHWM");
  const long rss_before = status_kib(d.pid(), "VmRSS");
  size_t bytes = 0, events = 0;
  auto r = run(d, "print('x' * 50_000_000)", id, [&](const execd::test::SseEvent& e) {
    if (e.type() == "stdout") {
      bytes += e.json.value("text", "").size();
      ++events;
    }
    return true;
  });
  REQUIRE(r.ended);
  const long hwm_after = status_kib(d.pid(), "VmHWM");
  const long rss_after = status_kib(d.pid(), "VmRSS");
  MESSAGE("50 MB print: daemon VmHWM " << hwm_before / 1024 << " -> " << hwm_after / 1024 << " MB, VmRSS " << rss_before / 1024
                                       << " -> " << rss_after / 1024 << " MB, " << events << " stdout events");
  CHECK(bytes == 50'000'001);
  CHECK(events >= 48);  // cut in pieces of at most 1 MiB
  CHECK(hwm_after - hwm_before < 120 * 1024);
  require_ping(d);

  // With a small cap the log takes one notice, then only the terminal event.
  DaemonProcess capped({"--event-log-max", "8MiB"});
  const auto cid = create_context(capped);
  auto c = run(capped, "print('y' * 50_000_000)", cid);
  REQUIRE(c.ended);
  bool notice = false;
  for (const auto& e : c.of_type("status")) notice = notice || e.json.dump().find("event log full") != std::string::npos;
  CHECK(notice);
  CHECK(text_of(c, "stdout").size() < 9u * 1024 * 1024);
  CHECK(c.events.back().type() == "execution_complete");
}

TEST_CASE("a display_data larger than one message may be is dropped with a notice; the daemon lives on") {
  DaemonProcess d;
  const auto id = create_context(d);
  const long hwm_before = status_kib(d.pid(), "VmHWM");
  auto r = run(d, "from IPython.display import display\ndisplay({'image/png': 'A' * 100_000_000}, raw=True)", id);
  REQUIRE(r.ended);
  const long hwm_after = status_kib(d.pid(), "VmHWM");
  MESSAGE("100 MB display_data: daemon VmHWM " << hwm_before / 1024 << " -> " << hwm_after / 1024 << " MB");
  bool notice = false;
  for (const auto& e : r.of_type("status")) notice = notice || e.json.dump().find("was dropped") != std::string::npos;
  CHECK(notice);
  CHECK(r.of_type("result").empty());
  CHECK(hwm_after - hwm_before < 250 * 1024);  // the received message itself, not copies of it
  CHECK(text_of(run(d, "print(6*7)", id), "stdout") == "42\n");
  require_ping(d);
}

TEST_CASE("twenty contexts created at once all start (in turn), then go") {
  DaemonProcess d({"--kernel-start-timeout", "120s"});
  constexpr int kContexts = 20;
  std::vector<std::thread> threads;
  std::vector<int> status(kContexts, 0);
  std::vector<std::string> ids(kContexts), bodies(kContexts);
  const auto started = Clock::now();
  for (int i = 0; i < kContexts; ++i) {
    threads.emplace_back([&, i] {
      auto c = d.client();
      c->set_read_timeout(std::chrono::seconds(300));
      auto r = c->Post("/code/context", json{{"language", "python"}}.dump(), "application/json");
      if (!r) return;
      status[i] = r->status;
      bodies[i] = r->body;
      if (r->status == 200) ids[i] = json::parse(r->body)["id"];
    });
  }
  for (auto& t : threads) t.join();
  MESSAGE("20 concurrent contexts took " << std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - started).count() << " s");
  for (int i = 0; i < kContexts; ++i) {
    INFO(bodies[i]);
    CHECK(status[i] == 200);
  }
  // Each one works, and each one goes.
  for (const auto& id : ids) {
    if (id.empty()) continue;
    CHECK(text_of(run(d, "print('ok')", id), "stdout") == "ok\n");
    auto del = d.client()->Delete("/code/contexts/" + id);
    REQUIRE(del);
    CHECK(del->status == 200);
  }
  require_ping(d);
}

TEST_CASE("an interrupt right after a cell starts ends the cell promptly, and the context keeps working") {
  DaemonProcess d;
  const auto id = create_context(d);
  for (int i = 0; i < 10; ++i) {
    const int delay_ms = (i * 7) % 21;  // 0..20 ms after the cell was queued
    std::thread interrupter;
    const auto started = Clock::now();
    int delete_status = 0;
    auto r = run(d, "import time; time.sleep(5)", id, [&](const execd::test::SseEvent& e) {
      if (e.type() == "init") {
        interrupter = std::thread([&] {
          std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
          auto del = d.client()->Delete("/code?id=" + id);
          if (del) delete_status = del->status;
        });
      }
      return true;
    });
    if (interrupter.joinable()) interrupter.join();
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
    INFO("try " << i << " (interrupt " << delay_ms << " ms after init) took " << took << " ms: " << r.raw);
    CHECK(delete_status == 200);
    REQUIRE(r.ended);
    CHECK(took < 3000);
    CHECK(r.events.back().type() == "execution_complete");
    CHECK_FALSE(r.of_type("error").empty());
  }
  auto after = run(d, "1+1", id);
  REQUIRE(after.ended);
  REQUIRE(after.of_type("result").size() == 1);
  CHECK(after.of_type("result")[0].json["results"]["text"] == "2");
}

TEST_CASE("under CPU load every result arrives before its cell is declared complete") {
  DaemonProcess d;
  const auto id = create_context(d);
  CpuLoad load(3);
  int missing = 0;
  for (int i = 0; i < 30; ++i) {
    auto r = run(d, "1+1", id);
    REQUIRE(r.ended);
    const auto results = r.of_type("result");
    if (results.size() != 1 || results[0].json["results"]["text"] != "2") {
      ++missing;
      MESSAGE("run " << i << " without its result: " << r.raw);
    }
  }
  CHECK(missing == 0);
}

TEST_CASE("kernel runtime directories live in the daemon's runtime directory") {
  execd::test::TempDir base;
  DaemonProcess d({"--runtime-base", base.str()});
  const auto id = create_context(d);
  auto r = run(d, "import sys; print([a for a in sys.argv if a.endswith('.json')][0])", id);
  const std::string conn = text_of(r, "stdout");
  INFO(conn);
  CHECK(conn.rfind(fs::canonical(base.path()).string() + "/execd-", 0) == 0);
  CHECK(conn.find("/kernels/execd-kernel-") != std::string::npos);
}

TEST_CASE("the checkout's own kernelspecs are found through JUPYTER_PATH, not the user's global directory") {
  const char* jp = std::getenv("JUPYTER_PATH");
  REQUIRE(jp != nullptr);  // meson test sets it (the checkout's .kernels/share/jupyter first)
  const std::string first = std::string(jp).substr(0, std::string(jp).find(':'));
  REQUIRE_MESSAGE(fs::exists(first + "/kernels/tslab/kernel.json"), "run `make kernels` first: " << first);
  // A HOME without any kernelspec: only JUPYTER_PATH can serve TypeScript.
  execd::test::TempDir home;
  const std::string old_home = std::getenv("HOME") != nullptr ? std::getenv("HOME") : "";
  ::setenv("HOME", home.str().c_str(), 1);
  DaemonProcess d;
  ::setenv("HOME", old_home.c_str(), 1);
  const auto id = create_context(d, "typescript");
  auto r = run(d, "console.log(40 + 2)", id);
  REQUIRE(r.ended);
  CHECK(text_of(r, "stdout") == "42\n");
}
