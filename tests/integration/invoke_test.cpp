// POST /invoke against real interpreters: each JSON type back from Python and JavaScript
// (and TypeScript through tslab's compiler), async handlers, output that tries to forge
// the result, capped output, every way a handler can fail, timeouts, artifacts, the
// streamed form, and 200 invocations at once.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <random>
#include <sstream>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <optional>
#include <cstdlib>
#include <set>
#include <thread>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "support/daemon_process.hpp"
#include "support/http_checks.hpp"
#include "support/proc_probe.hpp"
#include "support/sse_reader.hpp"
#include "support/temp_dir.hpp"

using execd::test::check_error;
using execd::test::DaemonProcess;
using execd::test::shell_output;
using nlohmann::json;

namespace {

std::vector<std::string> daemon_args() {
  std::vector<std::string> args;
  if (const char* ts = std::getenv("EXECD_TYPESCRIPT_MODULE"); ts != nullptr && *ts != '\0') {
    args = {"--typescript-module", ts};
  }
  return args;
}

json invoke(const DaemonProcess& d, const json& body) {
  auto r = d.client()->Post("/invoke", body.dump(), "application/json");
  REQUIRE(r);
  INFO(r->body);
  REQUIRE(r->status == 200);
  return json::parse(r->body);
}

json py(const DaemonProcess& d, const std::string& code, const json& event = nullptr, const json& extra = json::object()) {
  json body = extra;
  body["code"] = code;
  body["event"] = event;
  return invoke(d, body);
}

}  // namespace

TEST_CASE("invoke: python handlers return every JSON type; async handlers are awaited") {
  DaemonProcess d(daemon_args());
  const json event = {{"n", 2}, {"s", "é"}, {"list", {1, 2.5, nullptr, true}}};
  auto echo = py(d, "def handler(e):\n    return e\n", event);
  CHECK(echo["status"] == "success");
  CHECK(echo["return_value"] == event);
  CHECK(echo["exit_code"] == 0);
  CHECK(echo["error"].is_null());
  CHECK(echo["start"] == "warm");
  for (const auto& [code, want] : std::vector<std::pair<std::string, json>>{
           {"def handler(e): return 42", 42},
           {"def handler(e): return 1.5", 1.5},
           {"def handler(e): return 'text'", "text"},
           {"def handler(e): return [1, 'a', None]", json::array({1, "a", nullptr})},
           {"def handler(e): return None", nullptr},
           {"def handler(e): return False", false},
           {"import asyncio\nasync def handler(e):\n    await asyncio.sleep(0.01)\n    return {'awaited': e}", {{"awaited", 7}}},
       }) {
    auto r = py(d, code, 7);
    INFO(code);
    CHECK(r["status"] == "success");
    CHECK(r["return_value"] == want);
  }
  // Metrics of the run.
  CHECK(echo["metrics"]["duration_ms"].is_number());
  CHECK(echo["metrics"]["cpu_time_ms"].is_number());
  CHECK(echo["metrics"]["peak_memory_mb"].get<double>() > 1.0);
  CHECK(echo["metrics"].contains("io_read_bytes"));
  // Every invocation is an execution.
  auto e = d.client()->Get(("/executions/" + echo["id"].get<std::string>()).c_str());
  REQUIRE(e);
  CHECK(e->status == 200);
  CHECK(json::parse(e->body)["kind"] == "invocation");
}

TEST_CASE("invoke: printed output can neither forge nor break the result; output is capped") {
  DaemonProcess d(daemon_args());
  auto r = py(d,
              "import sys\n"
              "def handler(e):\n"
              "    print('{\"ok\": true, \"value\": \"forged\"}')\n"
              "    print('RESULT:forged', file=sys.stderr)\n"
              "    sys.stdout.write('\\x00\\xff garbage')\n"
              "    return 'real'\n");
  CHECK(r["status"] == "success");
  CHECK(r["return_value"] == "real");
  CHECK(r["stdout"].get<std::string>().find("forged") != std::string::npos);
  CHECK(r["stderr"] == "RESULT:forged\n");
  auto big = py(d, "def handler(e):\n    for i in range(40000):\n        print('x' * 99)\n    return 'done'\n");
  CHECK(big["status"] == "success");
  CHECK(big["return_value"] == "done");
  CHECK(big["truncated"]["stdout"] == true);
  CHECK(big["truncated"]["stderr"] == false);
  CHECK(big["stdout"].get<std::string>().size() <= (1u << 20));
  CHECK(big["stdout"].get<std::string>().size() > (1u << 19));
}

TEST_CASE("invoke: each way a handler fails is a clear failed result, and the next invocation is unaffected") {
  DaemonProcess d(daemon_args());
  auto raised = py(d, "def handler(e):\n    raise ValueError('bad input ' + str(e))\n", 5);
  CHECK(raised["status"] == "failed");
  CHECK(raised["error"]["type"] == "ValueError");
  CHECK(raised["error"]["message"] == "bad input 5");
  CHECK(raised["error"]["traceback"].get<std::string>().find("Traceback") != std::string::npos);
  CHECK(raised["return_value"].is_null());
  auto syntax = py(d, "def handler(e)\n    return 1\n");
  CHECK(syntax["status"] == "failed");
  CHECK(syntax["error"]["type"] == "SyntaxError");
  auto missing = py(d, "def not_the_handler(e):\n    return 1\n");
  CHECK(missing["status"] == "failed");
  CHECK(missing["error"]["type"] == "HandlerNotFound");
  auto unencodable = py(d, "def handler(e):\n    return object()\n");
  CHECK(unencodable["status"] == "failed");
  CHECK(unencodable["error"]["type"] == "NotSerializable");
  auto nan = py(d, "def handler(e):\n    return float('nan')\n");
  CHECK(nan["error"]["type"] == "NotSerializable");
  auto exited = py(d, "import sys\ndef handler(e):\n    sys.exit(3)\n");
  CHECK(exited["status"] == "failed");
  CHECK(exited["error"]["type"] == "SystemExit");
  CHECK(exited["error"]["message"].get<std::string>().find("3") != std::string::npos);
  auto hard_exit = py(d, "import os\ndef handler(e):\n    os._exit(4)\n");
  CHECK(hard_exit["status"] == "failed");
  CHECK(hard_exit["error"]["type"] == "NoResult");
  CHECK(hard_exit["exit_code"] == 4);
  auto fine = py(d, "def handler(e):\n    return e + 1\n", 1);
  CHECK(fine["status"] == "success");
  CHECK(fine["return_value"] == 2);
}

TEST_CASE("invoke: a timeout ends the handler and its processes") {
  DaemonProcess d(daemon_args());
  const auto t0 = std::chrono::steady_clock::now();
  auto r = py(d, "import time, subprocess\ndef handler(e):\n    subprocess.Popen(['sleep', '31.5'])\n    time.sleep(30)\n", nullptr,
              {{"timeout", 700}});
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));
  CHECK(r["status"] == "timeout");
  CHECK(r["start"] == "warm");  // the warm child and its group are ended as a cold one is
  CHECK(r["error"]["type"] == "Timeout");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(shell_output("pgrep -f '^sleep 31.5$' || true").empty());
}

TEST_CASE("invoke: files a handler writes are artifacts with their SHA-256, downloadable") {
  DaemonProcess d(daemon_args());
  auto r = py(d,
              "import os\n"
              "def handler(e):\n"
              "    open('out.txt', 'w').write('hello')\n"
              "    os.makedirs('sub', exist_ok=True)\n"
              "    open('sub/data.bin', 'wb').write(b'\\x00' * 1000)\n"
              "    return os.getcwd()\n");
  REQUIRE(r["status"] == "success");
  const auto cwd = r["return_value"].get<std::string>();
  REQUIRE(r["artifacts"].size() == 2);
  const auto& out = r["artifacts"][0];
  CHECK(out["path"] == cwd + "/out.txt");
  CHECK(out["size"] == 5);
  CHECK(out["sha256"] == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
  CHECK(r["artifacts"][1]["path"] == cwd + "/sub/data.bin");
  CHECK(r["artifacts"][1]["size"] == 1000);
  auto got = d.client()->Get(out["download"].get<std::string>().c_str());
  REQUIRE(got);
  CHECK(got->status == 200);
  CHECK(got->body == "hello");
  // The next invocation starts in a fresh, empty directory.
  auto next = py(d, "import os\ndef handler(e):\n    return sorted(os.listdir('.'))\n");
  CHECK(next["return_value"] == json::array());
}

TEST_CASE("invoke: javascript and typescript handlers, exported or defined, promises awaited") {
  DaemonProcess d(daemon_args());
  auto js = [&](const std::string& code, const json& event, const std::string& language = "javascript") {
    return invoke(d, {{"code", code}, {"event", event}, {"language", language}});
  };
  auto exported = js("module.exports.handler = async (e) => { await new Promise(r => setTimeout(r, 5)); return {got: e}; };", 3);
  CHECK(exported["status"] == "success");
  CHECK(exported["return_value"] == json{{"got", 3}});
  auto defined = js("function handler(e) { console.log('log line'); return [e, 'two', null, true]; }", 1);
  CHECK(defined["return_value"] == json::array({1, "two", nullptr, true}));
  CHECK(defined["stdout"] == "log line\n");
  auto thrown = js("exports.handler = () => { throw new RangeError('boom'); };", nullptr);
  CHECK(thrown["status"] == "failed");
  CHECK(thrown["error"]["type"] == "RangeError");
  CHECK(thrown["error"]["message"] == "boom");
  auto none = js("const x = 1;", nullptr);
  CHECK(none["error"]["type"] == "HandlerNotFound");
  auto bigint = js("exports.handler = () => 10n;", nullptr);
  CHECK(bigint["error"]["type"] == "NotSerializable");
  auto syntax = js("function handler( {", nullptr);
  CHECK(syntax["error"]["type"] == "SyntaxError");
  auto ts = js("export async function handler(e: {n: number}): Promise<number> { return e.n * 2; }", {{"n", 21}}, "typescript");
  CHECK(ts["status"] == "success");
  CHECK(ts["return_value"] == 42);
  auto ts_bad = js("export function handler(e: number): number { return e +; }", 1, "typescript");
  CHECK(ts_bad["status"] == "failed");
  CHECK(ts_bad["error"]["type"] == "SyntaxError");
}

TEST_CASE("invoke: ?stream=true streams output, then one event with the whole result") {
  DaemonProcess d(daemon_args());
  execd::test::SseRequest req;
  req.method = "POST";
  req.path = "/invoke?stream=true";
  req.body = json{{"code", "def handler(e):\n    print('working')\n    return {'x': e}\n"}, {"event", 9}}.dump();
  auto s = execd::test::sse_request(d.port(), req);
  CHECK(s.status == 200);
  CHECK(s.ended);
  REQUIRE_FALSE(s.events.empty());
  CHECK(s.events.front().type() == "init");
  CHECK(s.of_type("stdout").size() == 1);
  const auto& last = s.events.back();
  CHECK(last.type() == "invoke_result");
  CHECK(last.json["status"] == "success");
  CHECK(last.json["return_value"] == json{{"x", 9}});
}

TEST_CASE("invoke: bad requests are 4xx naming the problem") {
  DaemonProcess d(daemon_args());
  auto post = [&](const std::string& body) { return d.client()->Post("/invoke", body, "application/json"); };
  check_error(post("{}"), 400, "INVALID_REQUEST_BODY", "code");
  check_error(post(R"({"code": ""})"), 400, "INVALID_REQUEST_BODY", "code");
  check_error(post(R"({"code": "def handler(e): pass", "language": "cobol"})"), 400, "INVALID_REQUEST_BODY", "language");
  check_error(post(R"({"code": "def handler(e): pass", "timeout": -1})"), 400, "INVALID_REQUEST_BODY", "timeout");
  check_error(post(R"({"code": "def handler(e): pass", "envs": {"A": 1}})"), 400, "INVALID_REQUEST_BODY", "envs");
  check_error(post(R"([1])"), 400, "INVALID_REQUEST_BODY", "object");
  auto stream = d.client()->Post("/invoke?stream=maybe", R"({"code": "def handler(e): pass"})", "application/json");
  check_error(stream, 400, "INVALID_REQUEST_BODY", "stream");
}

TEST_CASE("invoke: 200 invocations at once are all answered correctly") {
  DaemonProcess d(daemon_args());
  constexpr int kTotal = 200;
  constexpr int kClients = 16;
  std::atomic<int> next{0};
  std::atomic<int> right{0};
  std::atomic<int> warm{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&] {
      auto client = d.client();
      for (int i = next++; i < kTotal; i = next++) {
        const json body = {{"code", "def handler(e):\n    return e * 3\n"}, {"event", i}};
        auto r = client->Post("/invoke", body.dump(), "application/json");
        if (r && r->status == 200) {
          const auto doc = json::parse(r->body);
          if (doc["status"] == "success" && doc["return_value"] == i * 3) ++right;
          if (doc["start"] == "warm") ++warm;
        }
      }
    });
  }
  for (auto& t : clients) t.join();
  CHECK(right.load() == kTotal);
  CHECK(warm.load() == kTotal);  // every one forked by the zygote, none fell back
}

TEST_CASE("history: GET /executions lists commands and invocations newest first, filtered and paged") {
  DaemonProcess d(daemon_args());
  auto command = [&](const json& body) {
    execd::test::SseRequest req;
    req.method = "POST";
    req.path = "/command";
    req.body = body.dump();
    auto s = execd::test::sse_request(d.port(), req);
    REQUIRE(s.ended);
    return s.events.front().json["text"].get<std::string>();
  };
  const auto ok = command({{"command", "true"}});
  const auto bad = command({{"command", "exit 3"}});
  const auto slow = command({{"command", "sleep 5"}, {"timeout", 200}});
  const auto inv = py(d, "def handler(e):\n    return 1\n")["id"].get<std::string>();
  auto list = [&](const std::string& query) {
    auto r = d.client()->Get(("/executions" + query).c_str());
    REQUIRE(r);
    INFO(r->body);
    REQUIRE(r->status == 200);
    return json::parse(r->body);
  };
  auto ids = [](const json& page) {
    std::vector<std::string> out;
    for (const auto& i : page["items"]) out.push_back(i["id"]);
    return out;
  };
  auto all = list("");
  CHECK(ids(all) == std::vector<std::string>{inv, slow, bad, ok});
  CHECK(all["next_after"].is_null());
  CHECK(all["items"][0]["kind"] == "invocation");
  CHECK(all["items"][0]["status"] == "success");
  CHECK(all["items"][1]["status"] == "timeout");
  CHECK(all["items"][2]["status"] == "failed");
  CHECK(all["items"][2]["metrics"]["exit_code"] == 3);
  CHECK(all["items"][3]["status"] == "success");
  CHECK(all["items"][3]["metrics"]["duration_ms"].is_number());
  CHECK(ids(list("?kind=command")) == std::vector<std::string>{slow, bad, ok});
  CHECK(ids(list("?status=failed")) == std::vector<std::string>{bad});
  auto first = list("?limit=2");
  CHECK(ids(first) == std::vector<std::string>{inv, slow});
  REQUIRE(first["next_after"] == slow);
  CHECK(ids(list("?limit=2&after=" + slow)) == std::vector<std::string>{bad, ok});
  check_error(d.client()->Get("/executions?kind=shell"), 400, "INVALID_REQUEST_BODY", "kind");
  check_error(d.client()->Get("/executions?status=done"), 400, "INVALID_REQUEST_BODY", "status");
  check_error(d.client()->Get("/executions?limit=0"), 400, "INVALID_REQUEST_BODY", "limit");
  check_error(d.client()->Get("/executions?limit=x"), 400, "INVALID_REQUEST_BODY", "limit");
  check_error(d.client()->Get("/executions?after=nope"), 400, "INVALID_REQUEST_BODY", "after");
  // The single view has the status too.
  auto one = d.client()->Get(("/executions/" + bad).c_str());
  REQUIRE(one);
  CHECK(json::parse(one->body)["status"] == "failed");
}

namespace {

// A real HTTP receiver for callbacks: answers `fail_first` requests 503, then 200.
struct Receiver {
  httplib::Server server;
  std::thread thread;
  int port = 0;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::pair<httplib::Headers, std::string>> got;  // requests answered 200
  int seen = 0;
  int fail_first = 0;
  explicit Receiver(int fail = 0) : fail_first(fail) {
    server.Post("/hook", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard lock(mu);
      if (seen++ < fail_first) {
        res.status = 503;
        return;
      }
      got.emplace_back(req.headers, req.body);
      cv.notify_all();
      res.status = 200;
    });
    port = server.bind_to_any_port("127.0.0.1");
    thread = std::thread([this] { server.listen_after_bind(); });
  }
  ~Receiver() {
    server.stop();
    thread.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port) + "/hook"; }
  bool wait_for(size_t n, std::chrono::seconds within) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, within, [&] { return got.size() >= n; });
  }
};

std::string hmac_hex(const std::string& key, const std::string& body) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(body.data()), body.size(), md, &len);
  std::string out = "sha256=";
  char b[3];
  for (unsigned int i = 0; i < len; ++i) {
    std::snprintf(b, sizeof b, "%02x", md[i]);
    out += b;
  }
  return out;
}

json callback_state(const DaemonProcess& d, const std::string& id) {
  auto r = d.client()->Get(("/executions/" + id).c_str());
  REQUIRE(r);
  return json::parse(r->body)["callback"];
}

}  // namespace

TEST_CASE("callbacks: the result is POSTed signed; retried past 503s; failed when nobody listens; bad URLs are 400") {
  const std::string key = "cb-key-0d9e";
  auto args = daemon_args();
  args.insert(args.end(), {"--callback-secret", key, "--callback-retry-for", "3s"});
  DaemonProcess d(args);
  {
    Receiver rx;
    auto r = py(d, "def handler(e):\n    return {'double': e * 2}\n", 21,
                {{"callback_url", rx.url()}, {"callback_headers", {{"X-Tenant", "t1"}}}});
    REQUIRE(rx.wait_for(1, std::chrono::seconds(10)));
    const auto& [headers, body] = rx.got.front();
    CHECK(headers.find("X-Execd-Signature")->second == hmac_hex(key, body));
    CHECK(headers.find("X-Tenant")->second == "t1");
    const auto doc = json::parse(body);
    CHECK(doc["id"] == r["id"]);
    CHECK(doc["status"] == "success");
    CHECK(doc["return_value"] == json{{"double", 42}});
    // The delivery state is on the execution.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const auto state = callback_state(d, r["id"]);
    CHECK(state["state"] == "delivered");
    CHECK(state["status_code"] == 200);
    CHECK(state["attempts"] == 1);
  }
  {
    Receiver rx(2);  // 503, 503, then 200
    execd::test::SseRequest req;
    req.method = "POST";
    req.path = "/command";
    req.body = json{{"command", "echo hi"}, {"background", true}, {"callback_url", rx.url()}}.dump();
    auto s = execd::test::sse_request(d.port(), req);
    REQUIRE(s.status == 200);
    const auto id = s.events.front().json["text"].get<std::string>();
    REQUIRE(rx.wait_for(1, std::chrono::seconds(15)));
    const auto doc = json::parse(rx.got.front().second);
    CHECK(doc["id"] == id);
    CHECK(doc["kind"] == "background-command");
    CHECK(doc["status"] == "success");
    CHECK(doc["metrics"]["exit_code"] == 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const auto state = callback_state(d, id);
    CHECK(state["state"] == "delivered");
    CHECK(state["attempts"] == 3);
  }
  {
    // A port nothing listens on: retried for --callback-retry-for, then failed.
    // A port bound and closed without listening: connections to it are refused.
    int dead_port = 0;
    {
      const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      socklen_t len = sizeof addr;
      REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
      REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
      dead_port = ntohs(addr.sin_port);
      ::close(fd);
    }
    auto r = py(d, "def handler(e):\n    return 1\n", nullptr,
                {{"callback_url", "http://127.0.0.1:" + std::to_string(dead_port) + "/never"}});
    json state;
    for (int i = 0; i < 100; ++i) {
      state = callback_state(d, r["id"]);
      if (state["state"] == "failed") break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    CHECK(state["state"] == "failed");
    INFO(state.dump());
    CHECK(state["attempts"].get<int>() >= 2);
    CHECK(state["last_error"].get<std::string>().find("127.0.0.1") != std::string::npos);
  }
  auto post = [&](const json& body) { return d.client()->Post("/invoke", body.dump(), "application/json"); };
  const std::string code = "def handler(e): pass";
  check_error(post({{"code", code}, {"callback_url", "ftp://example.com/x"}}), 400, "INVALID_REQUEST_BODY", "callback_url");
  check_error(post({{"code", code}, {"callback_url", "http:///path"}}), 400, "INVALID_REQUEST_BODY", "callback_url");
  check_error(post({{"code", code}, {"callback_url", "http://h:99999/"}}), 400, "INVALID_REQUEST_BODY", "callback_url");
  check_error(post({{"code", code}, {"callback_url", "http://h/x"}, {"callback_headers", {{"Bad Name", "v"}}}}), 400,
              "INVALID_REQUEST_BODY", "callback_headers");
  check_error(d.client()->Post("/command", json{{"command", "true"}, {"callback_url", 5}}.dump(), "application/json"), 400,
              "INVALID_REQUEST_BODY", "callback_url");
}

namespace {

// The daemon's zygotes: its python3 children started with the "execd-zygote" marker (the
// warm children are forks of one, so they carry the same command line: their parent
// tells them apart).
std::vector<pid_t> zygotes_of(pid_t daemon) {
  std::vector<pid_t> out;
  for (const auto& p : execd::test::processes()) {
    if (p.ppid == daemon && p.state != 'Z' && p.cmdline.find("execd-zygote") != std::string::npos) out.push_back(p.pid);
  }
  return out;
}

bool alive(pid_t pid) {
  for (const auto& p : execd::test::processes()) {
    if (p.pid == pid) return p.state != 'Z';
  }
  return false;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("invoke warm: a zygote forks python handlers by default, holds nothing of the daemon's, and stops with it") {
  auto d = std::make_unique<DaemonProcess>(daemon_args(), std::vector<std::string>{"EXECD_TEST_SECRET=zy-secret-71"});
  CHECK(zygotes_of(d->pid()).empty());  // started on first use: an idle daemon has none
  const std::string code = "import os\ndef handler(e):\n    return [os.getpid(), os.getppid()]\n";
  auto warm = py(*d, code);
  REQUIRE(warm["status"] == "success");
  CHECK(warm["start"] == "warm");
  auto zygotes = zygotes_of(d->pid());
  REQUIRE(zygotes.size() == 1);
  const pid_t zygote = zygotes[0];
  CHECK(warm["return_value"][1] == zygote);  // forked by the zygote, not started by the daemon
  auto again = py(*d, code);
  CHECK(again["start"] == "warm");
  CHECK(again["return_value"][0] != warm["return_value"][0]);  // a fresh process each time
  CHECK(zygotes_of(d->pid()) == std::vector<pid_t>{zygote});
  auto cold = py(*d, code, nullptr, {{"start", "cold"}});
  CHECK(cold["status"] == "success");
  CHECK(cold["start"] == "cold");
  CHECK(cold["return_value"][1] == d->pid());
  check_error(d->client()->Post("/invoke", R"({"code": "def handler(e): pass", "start": "lukewarm"})", "application/json"), 400,
              "INVALID_REQUEST_BODY", "start");
  // The spares: forked ahead by the zygote (one, or up to four after requests queued),
  // each waits for its request holding only the zygote's stdio, the two sockets and
  // pipes (its own, and the zygote's signal pipe: CLOEXEC, but a fork keeps it), nothing
  // of any invocation; the zygote's environment.
  std::vector<pid_t> spares;
  CHECK(execd::test::within(std::chrono::seconds(5), [&] {
    spares.clear();
    for (const auto& p : execd::test::processes()) {
      if (p.ppid == zygote && p.state != 'Z' && p.cmdline.find("execd-zygote") != std::string::npos) spares.push_back(p.pid);
    }
    return !spares.empty() && spares.size() <= 4;
  }));
  for (const pid_t spare : spares) {
    const std::string spare_fds = shell_output("for f in /proc/" + std::to_string(spare) + "/fd/*; do readlink $f; done | sort -u");
    INFO(spare_fds);
    std::istringstream spare_lines(spare_fds);
    for (std::string line; std::getline(spare_lines, line);) {
      CHECK((line == "/dev/null" || line.rfind("socket:", 0) == 0 || line.rfind("pipe:", 0) == 0));
    }
    const std::string spare_env = read_file("/proc/" + std::to_string(spare) + "/environ");
    CHECK(spare_env.find("zy-secret-71") == std::string::npos);
  }
  // The zygote starts with PATH only (an interpreter's launcher, such as a pyenv shim, may
  // add its own), never the daemon's variables; and it holds its stdio, its control and
  // work sockets, its signal pipe and one pipe per spare (the spare says on it that it
  // took a request): no descriptor of the daemon's.
  const std::string environ = read_file("/proc/" + std::to_string(zygote) + "/environ");
  INFO(environ);
  CHECK(environ.find("PATH=") != std::string::npos);
  CHECK(environ.find("EXECD_TEST_SECRET") == std::string::npos);
  CHECK(environ.find("zy-secret-71") == std::string::npos);
  const std::string fds = shell_output("ls -l /proc/" + std::to_string(zygote) + "/fd | grep -c -- '->'");
  CHECK(std::stoi(fds) == 7 + static_cast<int>(spares.size()));
  const std::string targets = shell_output("for f in /proc/" + std::to_string(zygote) + "/fd/*; do readlink $f; done | sort -u");
  INFO(targets);
  std::istringstream lines(targets);
  for (std::string line; std::getline(lines, line);) {
    CHECK((line == "/dev/null" || line.rfind("socket:", 0) == 0 || line.rfind("pipe:", 0) == 0));
  }
  // Stopped with the daemon.
  d.reset();
  CHECK(execd::test::within(std::chrono::seconds(5), [&] { return !alive(zygote); }));

  auto args = daemon_args();
  args.insert(args.end(), {"--warm-invoke", "off"});
  DaemonProcess off(args);
  auto r = py(off, code);
  CHECK(r["status"] == "success");
  CHECK(r["start"] == "cold");
  CHECK(zygotes_of(off.pid()).empty());
}

TEST_CASE("invoke warm: nothing one invocation does is visible to the next") {
  DaemonProcess d(daemon_args());
  auto first = py(d,
                  "import json, sys, builtins, threading, time, subprocess\n"
                  "def handler(e):\n"
                  "    json.execd_marker = 'leaked'\n"
                  "    sys.modules['execd_leak'] = sys\n"
                  "    builtins.execd_leak = 1\n"
                  "    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
                  "    return subprocess.Popen(['sleep', '32.7']).pid\n");
  REQUIRE(first["status"] == "success");
  CHECK(first["start"] == "warm");
  auto second = py(d,
                   "import json, sys, builtins, threading\n"
                   "def handler(e):\n"
                   "    return {'module_global': hasattr(json, 'execd_marker'), 'sys_modules': 'execd_leak' in sys.modules,\n"
                   "            'builtin': hasattr(builtins, 'execd_leak'), 'threads': threading.active_count()}\n");
  REQUIRE(second["status"] == "success");
  CHECK(second["start"] == "warm");
  CHECK(second["return_value"] == json{{"module_global", false}, {"sys_modules", false}, {"builtin", false}, {"threads", 1}});
  // The process the first one left behind was ended with it.
  const pid_t left = first["return_value"].get<pid_t>();
  CHECK(execd::test::within(std::chrono::seconds(3), [&] { return !alive(left); }));
  CHECK(execd::test::live_with("sleep 32.7").empty());
}

TEST_CASE("invoke warm: a zygote killed with SIGKILL fails what it ran, truthfully, and is started again") {
  DaemonProcess d(daemon_args());
  REQUIRE(py(d, "def handler(e):\n    return 1\n")["start"] == "warm");
  const auto zygotes = zygotes_of(d.pid());
  REQUIRE(zygotes.size() == 1);
  // Running user code once its marker exists: by then the child has sent the daemon its
  // pid (before anything of the request runs; the daemon reads what is queued on the
  // socket before it fails a dead zygote's requests), so the kill below fails a known
  // child rather than starting the handler again cold.
  execd::test::TempDir dir;
  const std::string marker = dir.str() + "/running";
  json inflight;
  std::thread t([&] {
    inflight = py(d, "import time\ndef handler(e):\n    open(e, 'w').close()\n    time.sleep(20)\n", marker, {{"timeout", 30000}});
  });
  const bool running = execd::test::within(std::chrono::seconds(20), [&] { return ::access(marker.c_str(), F_OK) == 0; });
  CHECK(running);
  REQUIRE(::kill(zygotes[0], SIGKILL) == 0);
  t.join();
  INFO(d.log());
  CHECK(inflight["status"] == "killed");
  CHECK(inflight["start"] == "warm");
  CHECK(inflight["error"]["message"].get<std::string>().find("zygote") != std::string::npos);
  auto next = py(d, "def handler(e):\n    return e\n", 5);
  CHECK(next["status"] == "success");
  CHECK(next["return_value"] == 5);
  CHECK((next["start"] == "warm" || next["start"] == "cold"));
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // restarts are at most one a second
  auto later = py(d, "import os\ndef handler(e):\n    return os.getppid()\n");
  CHECK(later["start"] == "warm");
  const auto now = zygotes_of(d.pid());
  REQUIRE(now.size() == 1);
  CHECK(now[0] != zygotes[0]);
  CHECK(later["return_value"] == now[0]);
}

TEST_CASE("invoke warm: limits and process isolation apply to the forked child") {
  DaemonProcess d(daemon_args());
  auto oom = py(d, "def handler(e):\n    x = b'\\x01' * (400 << 20)\n    return len(x)\n", nullptr, {{"memory_limit_mb", 64}});
  CHECK(oom["start"] == "warm");
  CHECK(oom["status"] == "killed");
  INFO(oom.dump());
  CHECK(oom["killed"]["limit"] == "memory");
  auto proc = py(d,
                 "import os, resource\n"
                 "def handler(e):\n"
                 "    status = open('/proc/self/status').read()\n"
                 "    return {'env': sorted(os.environ), 'nofile': list(resource.getrlimit(resource.RLIMIT_NOFILE)),\n"
                 "            'no_new_privs': 'NoNewPrivs:\\t1' in status, 'own_session': os.getsid(0) == os.getpid()}\n",
                 nullptr, {{"isolation", "process"}, {"max_open_files", 64}, {"envs", {{"MINE", "1"}}}});
  REQUIRE(proc["status"] == "success");
  CHECK(proc["start"] == "warm");
  CHECK(proc["return_value"]["nofile"] == json::array({64, 64}));
  CHECK(proc["return_value"]["no_new_privs"] == true);
  CHECK(proc["return_value"]["own_session"] == true);
  // The request's variables and the defaults isolation adds; nothing of the daemon's.
  CHECK(proc["return_value"]["env"] == json::array({"HOME", "MINE", "PATH"}));
  auto cpu = py(d, "def handler(e):\n    while True:\n        pass\n", nullptr, {{"cpu_time_limit_s", 1}, {"timeout", 20000}});
  CHECK(cpu["start"] == "warm");
  CHECK(cpu["status"] == "killed");
  CHECK(cpu["killed"]["limit"] == "cpu_time");
}

namespace {

// The id of the one invocation running now (GET /executions).
std::string running_invocation(const DaemonProcess& d) {
  auto r = d.client()->Get("/executions?kind=invocation&status=running");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  const auto items = json::parse(r->body)["items"];
  REQUIRE(items.size() == 1);
  return items[0]["id"].get<std::string>();
}

}  // namespace

TEST_CASE("invoke: DELETE /command?id= interrupts an invocation, warm or cold, and its result says so") {
  auto args = daemon_args();
  args.insert(args.end(), {"--kill-grace", "300ms"});
  DaemonProcess d(args);
  REQUIRE(py(d, "def handler(e):\n    return 1\n")["start"] == "warm");  // the zygote is up
  execd::test::TempDir dir;
  struct Case {
    std::string start, code, how;
  };
  const std::vector<Case> cases = {
      // SIGINT ends it: the handler sees KeyboardInterrupt.
      {"warm", "import time, subprocess\ndef handler(e):\n    subprocess.Popen(['sleep', '33.1'])\n    open(e, 'w').close()\n    time.sleep(30)\n",
       "KeyboardInterrupt"},
      {"cold", "import time, subprocess\ndef handler(e):\n    subprocess.Popen(['sleep', '33.1'])\n    open(e, 'w').close()\n    time.sleep(30)\n",
       "KeyboardInterrupt"},
      // SIGINT ignored: SIGTERM after the grace ends it.
      {"warm", "import signal, time\ndef handler(e):\n    signal.signal(signal.SIGINT, signal.SIG_IGN)\n    open(e, 'w').close()\n    time.sleep(30)\n",
       "signal: terminated"},
      {"cold", "import signal, time\ndef handler(e):\n    signal.signal(signal.SIGINT, signal.SIG_IGN)\n    open(e, 'w').close()\n    time.sleep(30)\n",
       "signal: terminated"},
  };
  int n = 0;
  for (const auto& c : cases) {
    INFO(c.start << ": " << c.code);
    const std::string marker = dir.str() + "/running-" + std::to_string(n++);
    json result;
    const auto t0 = std::chrono::steady_clock::now();
    std::thread t([&] { result = py(d, c.code, marker, {{"timeout", 60000}, {"start", c.start}}); });
    const bool running = execd::test::within(std::chrono::seconds(20), [&] { return ::access(marker.c_str(), F_OK) == 0; });
    CHECK(running);
    const std::string id = running ? running_invocation(d) : std::string();
    auto del = d.client()->Delete(("/command?id=" + id).c_str());
    t.join();
    REQUIRE(del);
    INFO(del->body);
    CHECK(del->status == 200);
    const auto answer = json::parse(del->body, nullptr, false);
    CHECK(answer["running"] == false);
    CHECK(answer["status"] == "killed");
    INFO(result.dump());
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));
    CHECK(result["id"] == id);
    CHECK(result["start"] == c.start);
    CHECK(result["status"] == "killed");
    CHECK(result["interrupted"] == true);
    CHECK(result["error"]["type"] == "Interrupted");
    CHECK(result["error"]["message"].get<std::string>().find(c.how) != std::string::npos);
    CHECK(result["return_value"].is_null());
    // Nothing of it is left: the process it started went with its group.
    CHECK(execd::test::within(std::chrono::seconds(3), [] { return execd::test::live_with("sleep 33.1").empty(); }));
    // Ended: a second interrupt is a conflict; the history says how it ended.
    check_error(d.client()->Delete(("/command?id=" + id).c_str()), 409, "CONFLICT", "not running");
    auto e = d.client()->Get(("/executions/" + id).c_str());
    REQUIRE(e);
    CHECK(json::parse(e->body)["status"] == "killed");
  }
  // A handler that catches the interrupt and returns anyway returned: that is what it says.
  const std::string marker = dir.str() + "/running-caught";
  json caught;
  std::thread t([&] {
    caught = py(d,
                "import time\ndef handler(e):\n    open(e, 'w').close()\n    try:\n        time.sleep(30)\n"
                "    except KeyboardInterrupt:\n        return 'caught'\n",
                marker, {{"timeout", 60000}});
  });
  const bool running = execd::test::within(std::chrono::seconds(20), [&] { return ::access(marker.c_str(), F_OK) == 0; });
  CHECK(running);
  if (running) {
    auto del = d.client()->Delete(("/command?id=" + running_invocation(d)).c_str());
    REQUIRE(del);
    CHECK(del->status == 200);
  }
  t.join();
  CHECK(caught["start"] == "warm");
  CHECK(caught["status"] == "success");
  CHECK(caught["return_value"] == "caught");
  CHECK(caught["interrupted"] == false);
  // And DELETE /code?id= (the other interrupt route) reaches an invocation too.
  const std::string marker2 = dir.str() + "/running-code";
  json via_code;
  std::thread t2([&] {
    via_code = py(d, "import time\ndef handler(e):\n    open(e, 'w').close()\n    time.sleep(30)\n", marker2, {{"timeout", 60000}});
  });
  const bool running2 = execd::test::within(std::chrono::seconds(20), [&] { return ::access(marker2.c_str(), F_OK) == 0; });
  CHECK(running2);
  if (running2) {
    auto del = d.client()->Delete(("/code?id=" + running_invocation(d)).c_str());
    REQUIRE(del);
    CHECK(del->status == 200);
  }
  t2.join();
  CHECK(via_code["status"] == "killed");
  CHECK(via_code["interrupted"] == true);
  check_error(d.client()->Delete("/command?id=no-such-invocation"), 404, "NOT_FOUND", "no-such-invocation");
}

TEST_CASE("invoke: the code never touches disk, warm or cold") {
  DaemonProcess d(daemon_args());
  execd::test::TempDir stamp_dir;
  const std::string stamp = stamp_dir.str() + "/stamp";
  std::ofstream(stamp) << "t";
  std::mt19937_64 rng(std::random_device{}());
  const std::string marker = "execd_marker_" + std::to_string(rng());
  for (const std::string start : {"warm", "cold"}) {
    auto r = py(d,
                "import os\n"
                "# " + marker + "\n"
                "def handler(e):\n"
                "    out = {}\n"
                "    for f in os.listdir('/proc/self/fd'):\n"
                "        try:\n"
                "            out[f] = os.readlink('/proc/self/fd/' + f)\n"
                "        except OSError:\n"
                "            pass\n"
                "    return out\n",
                nullptr, {{"start", start}});
    INFO(r.dump());
    REQUIRE(r["status"] == "success");
    CHECK(r["start"] == start);
    // The handler's descriptors: pipes, /dev/null and the result memfd; no file.
    for (const auto& [fd, target] : r["return_value"].items()) {
      const auto t = target.get<std::string>();
      CHECK((t.rfind("pipe:", 0) == 0 || t == "/dev/null" || t.rfind("/memfd:", 0) == 0));
    }
    CHECK(r["artifacts"].empty());
  }
  // No file written since the test began holds the code (the daemon's runtime directory,
  // spill files and working directories are all under /tmp here).
  const std::string found = shell_output("find /tmp \"${TMPDIR:-/tmp}\" -xdev -type f -newer " + stamp +
                                         " -size -64M 2>/dev/null | xargs -r grep -lF " + marker + " 2>/dev/null || true");
  CHECK(found.empty());
}

TEST_CASE("callbacks: /code cells and shell code POST their result, signed, when they end") {
  const std::string key = "cb-code-41";
  auto args = daemon_args();
  args.insert(args.end(), {"--callback-secret", key});
  DaemonProcess d(args);
  Receiver rx;
  auto run = [&](const json& body) {
    execd::test::SseRequest req;
    req.method = "POST";
    req.path = "/code";
    req.body = body.dump();
    auto s = execd::test::sse_request(d.port(), req);
    REQUIRE(s.status == 200);
    REQUIRE(s.ended);
    return s.events.front().json["text"].get<std::string>();
  };
  const auto shell = run({{"code", "echo from-code"}, {"callback_url", rx.url()}, {"callback_headers", {{"X-Cell", "c1"}}}});
  REQUIRE(rx.wait_for(1, std::chrono::seconds(10)));
  {
    const auto& [headers, body] = rx.got[0];
    CHECK(headers.find("X-Execd-Signature")->second == hmac_hex(key, body));
    CHECK(headers.find("X-Cell")->second == "c1");
    const auto doc = json::parse(body);
    CHECK(doc["id"] == shell);
    CHECK(doc["status"] == "success");
  }
  auto ctx = d.client()->Post("/code/context", R"({"language":"python"})", "application/json");
  REQUIRE(ctx);
  REQUIRE(ctx->status == 200);
  const auto ctx_id = json::parse(ctx->body)["id"].get<std::string>();
  const auto cell = run({{"code", "6 * 7"}, {"context", {{"id", ctx_id}}}, {"callback_url", rx.url()}});
  REQUIRE(rx.wait_for(2, std::chrono::seconds(60)));
  {
    const auto& [headers, body] = rx.got[1];
    CHECK(headers.find("X-Execd-Signature")->second == hmac_hex(key, body));
    const auto doc = json::parse(body);
    CHECK(cell == ctx_id);  // a cell's init names its context; the document names the execution
    CHECK(doc["kind"] == "code");
    CHECK(doc["status"] == "success");
    CHECK(doc["terminal"]["type"] == "execution_complete");
    json state = json::object();
    for (int i = 0; i < 50 && !(state.is_object() && state.value("state", "") == "delivered"); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      state = callback_state(d, doc["id"]);
    }
    CHECK(state["state"] == "delivered");
  }
  check_error(d.client()->Post("/code", json{{"code", "true"}, {"callback_url", "gopher://x"}}.dump(), "application/json"), 400,
              "INVALID_REQUEST_BODY", "callback_url");
}

namespace {

// The daemon's node spares (its node children carrying the spare tag; one taken by an
// invocation still carries it, but these tests ask between invocations, when every taken
// one has exited): TypeScript ones and level-process ones told apart by their bootstrap
// and by NoNewPrivs.
struct NodeSpare {
  pid_t pid;
  bool typescript;
  bool no_new_privs;
};

std::vector<NodeSpare> node_spares_of(pid_t daemon) {
  std::vector<NodeSpare> out;
  for (const auto& p : execd::test::processes()) {
    if (p.ppid != daemon || p.state == 'Z' || p.cmdline.find("execd-node-spare") == std::string::npos) continue;
    const std::string status = read_file("/proc/" + std::to_string(p.pid) + "/status");
    out.push_back({p.pid, p.cmdline.find("EXECD_TS = true") != std::string::npos,
                   status.find("NoNewPrivs:\t1") != std::string::npos});
  }
  return out;
}

// Waits until `daemon` has a spare of the flavour: the next such invocation starts warm.
std::optional<pid_t> spare_ready(pid_t daemon, bool typescript, bool no_new_privs = false) {
  std::optional<pid_t> found;
  execd::test::within(std::chrono::seconds(30), [&] {
    for (const auto& s : node_spares_of(daemon)) {
      if (s.typescript == typescript && s.no_new_privs == no_new_privs) found = s.pid;
    }
    return found.has_value();
  });
  return found;
}

json js(const DaemonProcess& d, const std::string& code, const json& event = nullptr, const json& extra = json::object()) {
  json body = extra;
  body["code"] = code;
  body["event"] = event;
  if (!body.contains("language")) body["language"] = "javascript";
  return invoke(d, body);
}

}  // namespace

TEST_CASE("invoke warm: javascript and typescript handlers run in node spares started ahead, which hold nothing of the daemon's") {
  auto d = std::make_unique<DaemonProcess>(daemon_args(), std::vector<std::string>{"EXECD_TEST_SECRET=ns-secret-53"});
  CHECK(node_spares_of(d->pid()).empty());  // started on first use: an idle daemon has none
  const std::string code = "exports.handler = (e) => [e, process.pid, process.ppid, process.argv.length, process.cwd()];";
  auto first = js(*d, code, 1);
  REQUIRE(first["status"] == "success");
  CHECK(first["start"] == "cold");
  CHECK(first["cold_reason"].get<std::string>().find("first javascript invocation") != std::string::npos);
  auto spare = spare_ready(d->pid(), false);
  REQUIRE(spare);
  // What a spare holds before its request: its stdio pipes, the result memfd as 3, and
  // node's own event loop descriptors (no socket, no file of the daemon's); the spare's
  // environment (PATH and the variables node reads at start), not the daemon's secrets.
  {
    const std::string spare_fds = shell_output("for f in /proc/" + std::to_string(*spare) + "/fd/*; do readlink $f; done | sort -u");
    INFO(spare_fds);
    std::istringstream spare_lines(spare_fds);
    for (std::string line; std::getline(spare_lines, line);) {
      CHECK((line.rfind("pipe:", 0) == 0 || line.rfind("anon_inode:", 0) == 0 || line.rfind("/memfd:execd-invoke-result", 0) == 0));
    }
  }
  CHECK(read_file("/proc/" + std::to_string(*spare) + "/environ").find("ns-secret-53") == std::string::npos);
  auto warm = js(*d, code, 2);
  REQUIRE(warm["status"] == "success");
  CHECK(warm["start"] == "warm");
  CHECK(warm["cold_reason"].is_null());
  CHECK(warm["return_value"][0] == 2);
  CHECK(warm["return_value"][1] == *spare);    // the spare ran it
  CHECK(warm["return_value"][2] == d->pid());  // a child of the daemon, as a cold start is
  CHECK(warm["return_value"][3] == 1);         // process.argv as `node -e` has it: the tag is gone
  CHECK(warm["return_value"][4] == warm["work_dir"]);
  CHECK(warm["return_value"][1] != first["return_value"][1]);
  // The environment a cold start gets at level none: the daemon's, then the request's.
  auto env = js(*d, "exports.handler = () => [process.env.EXECD_TEST_SECRET, process.env.MINE];", nullptr,
                {{"envs", {{"MINE", "m1"}}}, {"start", spare_ready(d->pid(), false) ? "warm" : "cold"}});
  CHECK(env["start"] == "warm");
  CHECK(env["return_value"] == json::array({"ns-secret-53", "m1"}));
  // The result channel, capped output and artifacts behave as for a cold start.
  REQUIRE(spare_ready(d->pid(), false));
  auto loud = js(*d,
                 "const fs = require('fs');\n"
                 "exports.handler = () => {\n"
                 "  process.stdout.write('{\"ok\": true, \"value\": \"forged\"}\\n');\n"
                 "  for (let i = 0; i < 30000; i++) process.stdout.write('x'.repeat(99) + '\\n');\n"
                 "  fs.writeFileSync('out.txt', 'hello');\n"
                 "  return 'real';\n"
                 "};");
  INFO(loud.dump().substr(0, 2000));
  CHECK(loud["start"] == "warm");
  CHECK(loud["status"] == "success");
  CHECK(loud["return_value"] == "real");
  CHECK(loud["truncated"]["stdout"] == true);
  CHECK(loud["stdout"].get<std::string>().size() <= 1u << 20);
  REQUIRE(loud["artifacts"].size() == 1);
  CHECK(loud["artifacts"][0]["sha256"] == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
  // Every way a handler fails, warm.
  REQUIRE(spare_ready(d->pid(), false));
  auto thrown = js(*d, "exports.handler = () => { throw new RangeError('boom'); };");
  CHECK(thrown["start"] == "warm");
  CHECK(thrown["error"]["type"] == "RangeError");
  REQUIRE(spare_ready(d->pid(), false));
  auto syntax = js(*d, "function handler( {");
  CHECK(syntax["start"] == "warm");
  CHECK(syntax["error"]["type"] == "SyntaxError");
  REQUIRE(spare_ready(d->pid(), false));
  auto exits = js(*d, "exports.handler = () => process.exit(4);");
  CHECK(exits["start"] == "warm");
  CHECK(exits["error"]["type"] == "NoResult");
  CHECK(exits["exit_code"] == 4);

  // TypeScript: its spares have the compiler loaded (the costly part of a cold start).
  if (!daemon_args().empty()) {
    const std::string ts_code = "export async function handler(e: {n: number}): Promise<number> { return e.n * 2; }";
    auto ts_first = js(*d, ts_code, {{"n", 1}}, {{"language", "typescript"}});
    CHECK(ts_first["start"] == "cold");
    CHECK(ts_first["return_value"] == 2);
    REQUIRE(spare_ready(d->pid(), true));
    auto ts = js(*d, ts_code, {{"n", 21}}, {{"language", "typescript"}});
    CHECK(ts["start"] == "warm");
    CHECK(ts["status"] == "success");
    CHECK(ts["return_value"] == 42);
    REQUIRE(spare_ready(d->pid(), true));
    auto ts_bad = js(*d, "export function handler(e: number): number { return e +; }", 1, {{"language", "typescript"}});
    CHECK(ts_bad["start"] == "warm");
    CHECK(ts_bad["error"]["type"] == "SyntaxError");
  }

  // A variable node reads only when it starts cannot be honoured by a spare: cold, saying so.
  REQUIRE(spare_ready(d->pid(), false));
  auto opts = js(*d, "exports.handler = () => process.env.NODE_OPTIONS;", nullptr,
                 {{"envs", {{"NODE_OPTIONS", "--max-old-space-size=64"}}}});
  CHECK(opts["start"] == "cold");
  CHECK(opts["return_value"] == "--max-old-space-size=64");
  CHECK(opts["cold_reason"].get<std::string>().find("NODE_OPTIONS") != std::string::npos);
  CHECK(js(*d, code, 3)["start"] == "warm");  // the spare was left for the next one
  auto asked_cold = js(*d, code, 3, {{"start", "cold"}});
  CHECK(asked_cold["start"] == "cold");
  CHECK(asked_cold["cold_reason"].is_null());

  // Stopped with the daemon: no node of ours is left.
  REQUIRE(spare_ready(d->pid(), false));
  const auto spares = node_spares_of(d->pid());
  REQUIRE_FALSE(spares.empty());
  d.reset();
  for (const auto& s : spares) CHECK(execd::test::within(std::chrono::seconds(5), [&] { return !alive(s.pid); }));
  CHECK(execd::test::live_with("execd-node-spare").empty());

  auto args = daemon_args();
  args.insert(args.end(), {"--node-spares", "0"});
  DaemonProcess off(args);
  for (int i = 0; i < 2; ++i) {
    auto r = js(off, code, i);
    CHECK(r["start"] == "cold");
    CHECK(r["cold_reason"].get<std::string>().find("--node-spares 0") != std::string::npos);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(node_spares_of(off.pid()).empty());
}

TEST_CASE("invoke warm: nothing one javascript invocation does is visible to the next") {
  DaemonProcess d(daemon_args());
  js(d, "exports.handler = () => 0;");  // the first starts cold and the spares
  REQUIRE(spare_ready(d.pid(), false));
  auto first = js(d,
                  "exports.handler = () => {\n"
                  "  globalThis.execdLeak = 'leaked';\n"
                  "  require('fs').execdLeak = 1;\n"
                  "  process.env.EXECD_LEAK = '1';\n"
                  "  Array.prototype.execdLeak = 2;\n"
                  "  const c = require('child_process').spawn('sleep', ['34.2'], {stdio: 'ignore'});\n"
                  "  c.unref();\n"
                  "  return [process.pid, c.pid];\n"
                  "};");
  REQUIRE(first["status"] == "success");
  CHECK(first["start"] == "warm");
  REQUIRE(spare_ready(d.pid(), false));
  auto second = js(d,
                   "exports.handler = () => ({global: typeof globalThis.execdLeak, module: 'execdLeak' in require('fs'),\n"
                   "  env: 'EXECD_LEAK' in process.env, proto: [].execdLeak === undefined, pid: process.pid});");
  REQUIRE(second["status"] == "success");
  CHECK(second["start"] == "warm");
  const auto& v = second["return_value"];
  CHECK(v["global"] == "undefined");
  CHECK(v["module"] == false);
  CHECK(v["env"] == false);
  CHECK(v["proto"] == true);
  CHECK(v["pid"] != first["return_value"][0]);  // one process per invocation
  CHECK_FALSE(alive(first["return_value"][0].get<pid_t>()));
  // The process the first one left behind was ended with it, as a cold start's is.
  CHECK(execd::test::within(std::chrono::seconds(3), [] { return execd::test::live_with("sleep 34.2").empty(); }));
  auto cold = js(d, "exports.handler = () => { require('child_process').spawn('sleep', ['34.2'], {stdio: 'ignore'}).unref(); };",
                 nullptr, {{"start", "cold"}});
  CHECK(cold["status"] == "success");
  CHECK(execd::test::within(std::chrono::seconds(3), [] { return execd::test::live_with("sleep 34.2").empty(); }));
  // Many at once: each spare goes to exactly one of them, the rest start cold; every
  // answer is its own.
  REQUIRE(spare_ready(d.pid(), false));
  constexpr int kAtOnce = 12;
  std::vector<json> got(kAtOnce);
  std::vector<std::thread> threads;
  for (int i = 0; i < kAtOnce; ++i) {
    threads.emplace_back([&, i] { got[i] = js(d, "exports.handler = (e) => [e, process.pid];", i); });
  }
  for (auto& t : threads) t.join();
  int warm = 0;
  std::set<pid_t> pids;
  for (int i = 0; i < kAtOnce; ++i) {
    CHECK(got[i]["status"] == "success");
    CHECK(got[i]["return_value"][0] == i);
    pids.insert(got[i]["return_value"][1].get<pid_t>());
    warm += got[i]["start"] == "warm" ? 1 : 0;
  }
  CHECK(pids.size() == kAtOnce);
  CHECK(warm >= 1);
}

TEST_CASE("invoke warm: a javascript spare's timeout and interrupt behave as a cold start's") {
  auto args = daemon_args();
  args.insert(args.end(), {"--kill-grace", "300ms"});
  DaemonProcess d(args);
  js(d, "exports.handler = () => 0;");
  REQUIRE(spare_ready(d.pid(), false));
  const auto t0 = std::chrono::steady_clock::now();
  auto slow = js(d,
                 "exports.handler = async () => {\n"
                 "  require('child_process').spawn('sleep', ['35.3'], {stdio: 'ignore'});\n"
                 "  await new Promise(r => setTimeout(r, 30000));\n"
                 "};",
                 nullptr, {{"timeout", 700}});
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));
  CHECK(slow["start"] == "warm");
  CHECK(slow["status"] == "timeout");
  CHECK(slow["error"]["type"] == "Timeout");
  CHECK(execd::test::within(std::chrono::seconds(3), [] { return execd::test::live_with("sleep 35.3").empty(); }));

  execd::test::TempDir dir;
  struct Case {
    std::string code, how;
  };
  const std::vector<Case> cases = {
      // SIGINT ends it (node's default).
      {"exports.handler = async (e) => { require('fs').writeFileSync(e, ''); await new Promise(r => setTimeout(r, 30000)); };",
       "signal: interrupt"},
      // SIGINT handled and ignored: SIGTERM after the grace ends it.
      {"exports.handler = async (e) => { process.on('SIGINT', () => {}); require('fs').writeFileSync(e, '');\n"
       "  await new Promise(r => setTimeout(r, 30000)); };",
       "signal: terminated"},
  };
  int n = 0;
  for (const auto& c : cases) {
    INFO(c.code);
    REQUIRE(spare_ready(d.pid(), false));
    const std::string marker = dir.str() + "/running-" + std::to_string(n++);
    json result;
    std::thread t([&] { result = js(d, c.code, marker, {{"timeout", 60000}}); });
    const bool running = execd::test::within(std::chrono::seconds(20), [&] { return ::access(marker.c_str(), F_OK) == 0; });
    CHECK(running);
    const std::string id = running ? running_invocation(d) : std::string();
    auto del = d.client()->Delete(("/command?id=" + id).c_str());
    t.join();
    REQUIRE(del);
    CHECK(del->status == 200);
    INFO(result.dump());
    CHECK(result["id"] == id);
    CHECK(result["start"] == "warm");
    CHECK(result["status"] == "killed");
    CHECK(result["interrupted"] == true);
    CHECK(result["error"]["type"] == "Interrupted");
    CHECK(result["error"]["message"].get<std::string>().find(c.how) != std::string::npos);
    check_error(d.client()->Delete(("/command?id=" + id).c_str()), 409, "CONFLICT", "not running");
  }
}

TEST_CASE("invoke warm: limits and process isolation apply to a javascript spare before its code runs") {
  DaemonProcess d(daemon_args());
  const json isolated = {{"isolation", "process"}, {"max_open_files", 64}, {"envs", {{"MINE", "1"}}}};
  const std::string probe =
      "const fs = require('fs');\n"
      "exports.handler = () => {\n"
      "  const status = fs.readFileSync('/proc/self/status', 'utf8');\n"
      "  const limits = fs.readFileSync('/proc/self/limits', 'utf8');\n"
      "  const stat = fs.readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ');\n"
      "  return {env: Object.keys(process.env).sort(), nofile: /Max open files\\s+64\\s+64/.test(limits),\n"
      "          no_new_privs: status.includes('NoNewPrivs:\\t1'), own_session: Number(stat[3]) === process.pid,\n"
      "          cgroup: fs.readFileSync('/proc/self/cgroup', 'utf8')};\n"
      "};";
  auto first = js(d, probe, nullptr, isolated);
  CHECK(first["start"] == "cold");
  REQUIRE(spare_ready(d.pid(), false, true));  // a level-process spare: started with no_new_privs
  auto proc = js(d, probe, nullptr, isolated);
  INFO(proc.dump());
  REQUIRE(proc["status"] == "success");
  CHECK(proc["start"] == "warm");
  CHECK(proc["return_value"]["nofile"] == true);
  CHECK(proc["return_value"]["no_new_privs"] == true);
  CHECK(proc["return_value"]["own_session"] == true);
  // The request's variables and the defaults isolation adds; nothing of the daemon's.
  CHECK(proc["return_value"]["env"] == json::array({"HOME", "MINE", "PATH"}));
  // In the invocation's own cgroup, as a cold start at this level is.
  CHECK(proc["return_value"]["cgroup"].get<std::string>().find("c-" + proc["id"].get<std::string>()) != std::string::npos);
  CHECK(first["return_value"]["env"] == proc["return_value"]["env"]);
  CHECK(first["return_value"]["cgroup"].get<std::string>().find("c-" + first["id"].get<std::string>()) != std::string::npos);
  // A level-none spare is never given to a level-process invocation (it lacks
  // no_new_privs, which cannot be added to a running process), and the reverse.
  for (const auto& s : node_spares_of(d.pid())) CHECK(s.no_new_privs);
  // Limits hold: memory (the cgroup's), CPU time.
  REQUIRE(spare_ready(d.pid(), false, true));
  auto oom = js(d, "exports.handler = () => { const a = []; for (;;) a.push(Buffer.alloc(1 << 20, 1)); };", nullptr,
                {{"isolation", "process"}, {"memory_limit_mb", 96}, {"timeout", 30000}});
  INFO(oom.dump());
  CHECK(oom["start"] == "warm");
  CHECK(oom["status"] == "killed");
  CHECK(oom["killed"]["limit"] == "memory");
  REQUIRE(spare_ready(d.pid(), false, true));
  auto cpu = js(d, "exports.handler = () => { for (;;) {} };", nullptr,
                {{"isolation", "process"}, {"cpu_time_limit_s", 1}, {"timeout", 30000}});
  INFO(cpu.dump());
  CHECK(cpu["start"] == "warm");
  CHECK(cpu["status"] == "killed");
  CHECK(cpu["killed"]["limit"] == "cpu_time");
  // Namespace isolation runs inside bwrap's own process tree: cold, saying why.
  auto ns = js(d, "exports.handler = () => 1;", nullptr, {{"isolation", "namespace"}});
  CHECK(ns["status"] == "success");
  CHECK(ns["start"] == "cold");
  CHECK(ns["cold_reason"].get<std::string>().find("namespace") != std::string::npos);
}
