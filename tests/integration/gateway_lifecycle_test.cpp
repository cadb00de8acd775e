// One sandbox's life through execd-gateway, the same script on both engines an SDK would
// drive: the process backend (bubblewrap + cgroups) and the docker backend (a private
// dockerd, a busybox-only image, execd from the bundle; python cells in a second image
// holding Debian's Python). Every request to the sandbox goes
// through the gateway's proxy (/v1/sandboxes/{id}/proxy/44772/...) with the gateway's API
// key only: streamed output arrives unbuffered, 100 MB go up and down with the gateway's
// RSS flat, the limits hold inside, pause stops time, a dying sandbox ends its streams
// and is reported, and delete or expiry leave nothing behind.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "integration/gateway_execd_bundle_dir.hpp"  // EXECD_BUNDLE_DIR: make_bundle.sh's layout of this build's execd
#include "integration/gateway_harness.hpp"
#include "support/daemon_process.hpp"
#include "support/private_dockerd.hpp"
#include "support/proc_probe.hpp"
#include "support/sse_reader.hpp"
#include "support/temp_dir.hpp"

using execd::test::PrivateDockerd;
using execd::test::shell_output;
using execd::test::sse_request;
using execd::test::SseRequest;
using execd::test::SseResponse;
using execd::test::TempDir;
using execd::test::within;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr const char* kApiKey = "lifecycle-key-42";
constexpr const char* kDockerImage = "execd-gw-busybox:latest";
constexpr const char* kDockerPythonImage = "execd-gw-python:latest";

/// An engine the script runs on: how to start the gateway, the image a create names,
/// how to kill a sandbox behind the gateway's back, and how to see that nothing is left.
struct Engine {
  std::string name;
  std::vector<std::string> gateway_args;
  json image;
  bool has_python = false;
  std::function<void(const std::string& state_dir, const std::string& id)> kill;
  std::function<std::string(const std::string& state_dir, const std::string& id)> leftovers;
};

constexpr const char* kLoggedRuntime = "execd-logged-runc";

/// An OCI runtime as an operator registers runsc: runc behind a script that appends each
/// call's arguments to a log first, so a test sees which containers ran under it.
const TempDir& logged_runtime_dir() {
  static const TempDir dir;
  static const bool written = [] {
    const auto script = dir.write("runtime", "#!/bin/sh\necho \"$*\" >> " + dir.str() +
                                                 "/calls.log\nexec /usr/sbin/runc \"$@\"\n");
    std::filesystem::permissions(script, std::filesystem::perms::owner_all);
    return true;
  }();
  (void)written;
  return dir;
}

/// One private dockerd (and the imported image) for every docker case of this program.
PrivateDockerd& dockerd() {
  static PrivateDockerd d(PrivateDockerd::Options{
      .iptables = false, .runtimes = {{kLoggedRuntime, logged_runtime_dir().str() + "/runtime"}}});
  static const bool imported = (d.import_busybox_image(kDockerImage), true);
  (void)imported;
  return d;
}

/// Debian's Python and ipykernel from this machine's own files, assembled by
/// tools/make_python_rootfs.sh (what `make images` builds as execd-python) and imported
/// into the private engine once; how long that took is printed.
const std::string& docker_python_image() {
  static const std::string reference = [] {
    const char* script = std::getenv("EXECD_PYTHON_ROOTFS");
    if (script == nullptr) throw std::runtime_error("EXECD_PYTHON_ROOTFS is not set (meson sets it)");
    const auto t0 = std::chrono::steady_clock::now();
    TempDir dir;
    const std::string root = dir.str() + "/rootfs";
    std::string built = shell_output(std::string(script) + " " + root + " 2>&1 && echo built-ok");
    const std::string ok = "built-ok\n";
    if (built.size() < ok.size() || built.compare(built.size() - ok.size(), ok.size(), ok) != 0) {
      throw std::runtime_error("make_python_rootfs.sh failed:\n" + built);
    }
    built.resize(built.size() - ok.size());
    const auto t1 = std::chrono::steady_clock::now();
    dockerd().import_tree(kDockerPythonImage, root);
    const auto t2 = std::chrono::steady_clock::now();
    MESSAGE(built << "python image: tree " << std::chrono::duration_cast<std::chrono::milliseconds>(t1 - t0).count()
                  << " ms, import " << std::chrono::duration_cast<std::chrono::milliseconds>(t2 - t1).count() << " ms");
    return std::string(kDockerPythonImage);
  }();
  return reference;
}

std::string docker_cli(const std::string& args) {
  return shell_output("DOCKER_HOST=" + dockerd().host() + " docker " + args + " 2>&1");
}

Engine process_engine() {
  Engine e;
  e.name = "process";
  e.gateway_args = {"--backend", "process"};
  e.image = {{"uri", "host"}};
  e.has_python = true;
  // SIGKILL to everything below the sandbox's keeper: its bwrap and execd, as a crash.
  e.kill = [](const std::string& dir, const std::string& id) {
    shell_output(execd::test::kill_below_keepers_command(dir + "/sandboxes/" + id + "/", /*keepers_too=*/false));
  };
  e.leftovers = [](const std::string& dir, const std::string& id) {
    std::string left;
    if (std::filesystem::exists(dir + "/sandboxes/" + id)) left += "directory; ";
    left += shell_output("pgrep -f '[e]xecd-sandbox-keeper " + dir + "/sandboxes/" + id + "/' || true");
    left += shell_output("find /sys/fs/cgroup/*/ -maxdepth 4 -type d -name '*" + id + "*' 2>/dev/null || true");
    return left;
  };
  return e;
}

Engine docker_engine() {
  Engine e;
  e.name = "docker";
  // The host's own iptables are never touched by tests (docker_network_test.cpp runs the
  // firewall in a network namespace of its own).
  e.gateway_args = {"--backend", "docker", "--docker-host", dockerd().host(), "--execd-bundle", EXECD_BUNDLE_DIR,
                    "--docker-host-firewall", "off"};
  e.image = {{"uri", kDockerImage}};
  e.kill = [](const std::string&, const std::string& id) { docker_cli("kill execd-" + id); };
  e.leftovers = [](const std::string&, const std::string& id) {
    return docker_cli("ps -a -q --filter label=io.execd.sandbox=" + id) +
           docker_cli("network ls -q --filter name=execd-" + id);
  };
  return e;
}

/// The shared harness's gateway (its own state directory, the engine's flags; whatever a
/// test leaves live is deleted at the end), plus what this script does through the proxy.
class Gateway {
 public:
  explicit Gateway(const Engine& engine) : gw_(dir_.str(), kApiKey, engine.gateway_args) {}
  /// Long timeouts: 100 MB go through one request.
  std::unique_ptr<httplib::Client> client() const {
    auto c = gw_.client();
    c->set_read_timeout(60s);
    c->set_write_timeout(60s);
    return c;
  }
  std::string create(const json& body) const { return gw_.create(body)["id"]; }
  json sandbox(const std::string& id) const { return gw_.sandbox(id); }
  json wait_state(const std::string& id, const std::string& state, std::chrono::seconds timeout = 60s) const {
    return gw_.wait_state(id, state, timeout);
  }
  /// An SSE request through the proxy to the sandbox's execd.
  SseResponse stream(const std::string& id, const std::string& path, const json& body,
                     std::function<bool(const execd::test::SseEvent&)> on_event = nullptr) const {
    SseRequest req;
    req.method = "POST";
    req.path = proxy(id) + path;
    req.body = body.dump();
    req.headers.emplace("OPEN-SANDBOX-API-KEY", kApiKey);
    req.timeout = 60s;
    req.on_event = std::move(on_event);
    return sse_request(gw_.port(), req);
  }
  /// A command's whole stdout, through the proxy.
  std::string run(const std::string& id, const std::string& command) const {
    std::string out;
    for (const auto& e : stream(id, "/command", {{"command", command}}).of_type("stdout")) out += e.json.value("text", "") + "\n";
    return out;
  }
  static std::string proxy(const std::string& id) { return "/v1/sandboxes/" + id + "/proxy/44772"; }
  [[nodiscard]] long rss_kib() const { return execd::test::status_kib(gw_.pid(), "VmRSS"); }
  [[nodiscard]] std::string dir() const { return dir_.str(); }

 private:
  TempDir dir_;  // before gw_: its state directory
  gateway_harness::Gateway gw_;
};

/// DELETE through the gateway: 204, the row Terminated, nothing of it left on the engine.
void delete_leaving_nothing(const Gateway& gw, const Engine& engine, const std::string& id) {
  auto deleted = gw.client()->Delete("/v1/sandboxes/" + id);
  REQUIRE(deleted);
  CHECK(deleted->status == 204);
  CHECK(gw.sandbox(id)["status"]["state"] == "Terminated");
  CHECK(within(10s, [&] { return engine.leftovers(gw.dir(), id).empty(); }));
  CAPTURE(engine.leftovers(gw.dir(), id));
}

uint64_t fnv1a(std::string_view bytes, uint64_t h = 1469598103934665603ull) {
  for (const unsigned char c : bytes) h = (h ^ c) * 1099511628211ull;
  return h;
}

long counter(const Gateway& gw, const std::string& id) {
  const std::string out = gw.run(id, "cat /tmp/ticks");
  return out.empty() ? -1 : std::stol(out);
}

void whole_life(const Engine& engine) {
  Gateway gw(engine);
  const std::string id = gw.create({{"image", engine.image},
                                    {"timeout", 600},
                                    {"resourceLimits", {{"memory", "256Mi"}, {"pids", "64"}}},
                                    {"env", {{"GREETING", "hello-" + engine.name}}}});
  gw.wait_state(id, "Running");

  SUBCASE("a command streams through the proxy unbuffered, with the spec's env") {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::chrono::milliseconds> arrivals;
    auto r = gw.stream(id, "/command", {{"command", "for i in 1 2 3; do echo tick$i-$GREETING; sleep 1; done"}},
                       [&](const execd::test::SseEvent& e) {
                         if (e.type() == "stdout") {
                           arrivals.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::steady_clock::now() - t0));
                         }
                         return true;
                       });
    CAPTURE(r.raw);
    REQUIRE(r.of_type("stdout").size() == 3);
    CHECK(r.of_type("stdout")[0].json["text"] == "tick1-hello-" + engine.name);
    REQUIRE(arrivals.size() == 3);
    // The first line is seen long before the command ends: nothing on the way held it.
    CHECK(arrivals[0] < 1500ms);
    CHECK(arrivals[2] - arrivals[0] >= 1500ms);
    CHECK(r.of_type("execution_complete").size() == 1);
  }

  // The busybox image has no python: python_cells() runs them on docker in an image that has.
  if (engine.has_python) SUBCASE("a python cell runs through the proxy") {
    auto r = gw.stream(id, "/code", {{"code", "import os\nprint(6 * 7, os.environ['GREETING'])"}, {"context", {{"language", "python"}}}});
    CAPTURE(r.raw);
    REQUIRE(r.of_type("stdout").size() >= 1);
    CHECK(r.of_type("stdout")[0].json["text"] == "42 hello-" + engine.name + "\n");
  }

  SUBCASE("100 MB up and down through the proxy, the gateway's RSS flat") {
    std::string data(100u << 20, '\0');
    std::mt19937_64 gen(42);
    for (size_t i = 0; i + 8 <= data.size(); i += 8) {
      const uint64_t v = gen();
      std::memcpy(&data[i], &v, 8);
    }
    const long rss_before = gw.rss_kib();
    httplib::MultipartFormDataItems items = {
        {"metadata", json{{"path", "/tmp/big.bin"}}.dump(), "metadata", "application/json"},
        {"file", data, "big.bin", "application/octet-stream"}};
    auto up = gw.client()->Post(Gateway::proxy(id) + "/files/upload", items);
    REQUIRE(up);
    INFO(up->body);
    CHECK(up->status == 200);
    const long rss_after_up = gw.rss_kib();

    size_t got = 0;
    uint64_t hash = 1469598103934665603ull;
    auto down = gw.client()->Get(Gateway::proxy(id) + "/files/download?path=/tmp/big.bin",
                                 [&](const char* p, size_t n) {
                                   got += n;
                                   hash = fnv1a({p, n}, hash);
                                   return true;
                                 });
    REQUIRE(down);
    CHECK(down->status == 200);
    CHECK(got == data.size());
    CHECK(hash == fnv1a(data));
    const long rss_after_down = gw.rss_kib();
    MESSAGE(engine.name << ": gateway RSS " << rss_before << " KiB, after upload " << rss_after_up << ", after download "
                        << rss_after_down);
    // Streamed, not held: far less than the 100 MB that went through.
    CHECK(rss_after_up - rss_before < 24 * 1024);
    CHECK(rss_after_down - rss_before < 24 * 1024);
  }

  SUBCASE("the limits hold inside: memory past 256Mi is killed, forks past 64 refused") {
    const std::string mem = gw.run(id, "x=$(head -c 400000000 /dev/zero | tr '\\0' a); echo survived ${#x}");
    CHECK(mem.find("survived") == std::string::npos);
    auto forks = gw.stream(id, "/command", {{"command", "for i in $(seq 1 120); do sleep 2 & done; wait; echo done"}});
    CAPTURE(forks.raw);
    const std::string all = forks.raw;
    CHECK((all.find("fork") != std::string::npos || all.find("Resource temporarily unavailable") != std::string::npos));
    // The sandbox's execd lived through both (once the refused loop's last processes are
    // reaped, its next command can fork again).
    CHECK(within(10s, [&] { return gw.run(id, "echo still-here") == "still-here\n"; }, 200ms));
    CHECK(gw.sandbox(id)["status"]["state"] == "Running");
  }

  SUBCASE("pause stops a running loop, resume lets it go on; renew moves the expiry") {
    auto bg = gw.client()->Post(Gateway::proxy(id) + "/command",
                                json{{"command", "i=0; while true; do i=$((i+1)); echo $i > /tmp/ticks.new; mv /tmp/ticks.new /tmp/ticks; sleep 0.1; done"},
                                     {"background", true}}
                                    .dump(),
                                "application/json");
    REQUIRE(bg);
    REQUIRE(bg->status == 200);
    std::this_thread::sleep_for(1s);
    auto paused = gw.client()->Post("/v1/sandboxes/" + id + "/pause", "", "application/json");
    REQUIRE(paused);
    CHECK(paused->status == 202);
    gw.wait_state(id, "Paused");
    // The frozen sandbox cannot be read (its execd is frozen too): the loop's count is
    // read after resume, and 2 s of pause must not have advanced it by 20.
    std::this_thread::sleep_for(2s);
    auto resumed = gw.client()->Post("/v1/sandboxes/" + id + "/resume", "", "application/json");
    REQUIRE(resumed);
    CHECK(resumed->status == 202);
    gw.wait_state(id, "Running");
    const long at_resume = counter(gw, id);
    std::this_thread::sleep_for(2s);
    const long later = counter(gw, id);
    CAPTURE(at_resume);
    CAPTURE(later);
    // ~1 s of ticks before the pause (up to 10, fewer on a loaded machine), none during it.
    CHECK(at_resume > 0);
    CHECK(at_resume <= 14);
    CHECK(later > at_resume);

    auto renewed = gw.client()->Post("/v1/sandboxes/" + id + "/renew-expiration",
                                     json{{"expiresAt", "2099-01-01T00:00:00Z"}}.dump(), "application/json");
    REQUIRE(renewed);
    CHECK(renewed->status == 200);
    CHECK(gw.sandbox(id)["expiresAt"].get<std::string>().rfind("2099-01-01T00:00:00", 0) == 0);
  }

  SUBCASE("a sandbox that dies ends its proxied stream and is reported Failed, its remains removed") {
    std::atomic<bool> started{false};
    std::optional<SseResponse> cut;
    const auto t0 = std::chrono::steady_clock::now();
    std::thread reader([&] {
      cut = gw.stream(id, "/command", {{"command", "echo begun; sleep 60"}}, [&](const execd::test::SseEvent& e) {
        if (e.type() == "stdout") started = true;
        return true;
      });
    });
    while (!started && std::chrono::steady_clock::now() - t0 < 30s) std::this_thread::sleep_for(20ms);
    CHECK(started);
    engine.kill(gw.dir(), id);
    reader.join();
    REQUIRE(cut);
    // The stream did not wait for the 60 s sleep: it ended when the sandbox did.
    CHECK(std::chrono::steady_clock::now() - t0 < 30s);
    CHECK(cut->of_type("execution_complete").empty());
    const json failed = gw.wait_state(id, "Failed", 30s);
    CHECK(failed["status"]["message"].get<std::string>().size() > 0);
    CHECK(within(10s, [&] { return engine.leftovers(gw.dir(), id).empty(); }));
    CAPTURE(engine.leftovers(gw.dir(), id));
    auto gone = gw.client()->Get(Gateway::proxy(id) + "/ping");
    REQUIRE(gone);
    CHECK(gone->status >= 400);
    CHECK(gone->body.find("\"code\"") != std::string::npos);
  }

  SUBCASE("delete: 204, Terminated, nothing left on the engine") {
    delete_leaving_nothing(gw, engine, id);
  }
}

void expiry(const Engine& engine) {
  Gateway gw(engine);
  const std::string id = gw.create({{"image", engine.image}, {"timeout", 3}});
  gw.wait_state(id, "Running");
  const json ended = gw.wait_state(id, "Terminated", 30s);
  CHECK(ended["status"]["reason"] == "ttl_expiry");
  CHECK(within(10s, [&] { return engine.leftovers(gw.dir(), id).empty(); }));
  CAPTURE(engine.leftovers(gw.dir(), id));
}

/// Python cells through the proxy in a container whose image has Debian's Python and
/// ipykernel (the busybox image of whole_life has none): execd from the bundle finds the
/// image's kernelspec and starts its kernel; results, streams, errors and state come back
/// through the gateway as they do on the process backend; delete leaves nothing.
void python_cells(Engine engine) {
  Gateway gw(engine);
  const std::string id = gw.create({{"image", engine.image}, {"timeout", 600}, {"env", {{"GREETING", "hello-" + engine.name}}}});
  gw.wait_state(id, "Running");

  CHECK(gw.run(id, "echo $GREETING; ls /usr/share/jupyter/kernels") == "hello-" + engine.name + "\npython3\n");

  auto ctx = gw.client()->Post(Gateway::proxy(id) + "/code/context", json{{"language", "python"}}.dump(), "application/json");
  REQUIRE(ctx);
  INFO(ctx->body);
  REQUIRE(ctx->status == 200);
  const json context = {{"id", json::parse(ctx->body)["id"]}, {"language", "python"}};

  auto first = gw.stream(id, "/code", {{"code", "import os, sys\nx = 6 * 7\nprint(x, os.environ['GREETING'], sys.executable, os.path.exists('/opt/execd/start.sh'))\nx + 1"},
                                       {"context", context}});
  CAPTURE(first.raw);
  REQUIRE(first.of_type("stdout").size() == 1);
  CHECK(first.of_type("stdout")[0].json["text"] == "42 hello-" + engine.name + " /usr/bin/python3 True\n");
  REQUIRE(first.of_type("result").size() == 1);
  CHECK(first.of_type("result")[0].json["results"]["text"] == "43");
  CHECK(first.of_type("execution_complete").size() == 1);

  // The same kernel: x survives from the cell before.
  auto second = gw.stream(id, "/code", {{"code", "x * 2"}, {"context", context}});
  CAPTURE(second.raw);
  REQUIRE(second.of_type("result").size() == 1);
  CHECK(second.of_type("result")[0].json["results"]["text"] == "84");

  auto failed = gw.stream(id, "/code", {{"code", "1/0"}, {"context", context}});
  CAPTURE(failed.raw);
  REQUIRE(failed.of_type("error").size() == 1);
  CHECK(failed.of_type("error")[0].json["error"]["ename"] == "ZeroDivisionError");
  CHECK(failed.of_type("execution_complete").size() == 1);

  delete_leaving_nothing(gw, engine, id);
}

}  // namespace

TEST_CASE("process backend: a sandbox's whole life through the gateway's proxy") { whole_life(process_engine()); }

TEST_CASE("docker backend: a sandbox's whole life through the gateway's proxy") { whole_life(docker_engine()); }

TEST_CASE("docker backend: python cells through the proxy, in an image with Debian's Python and ipykernel") {
  Engine engine = docker_engine();
  engine.name = "docker-python";
  engine.image = {{"uri", docker_python_image()}};
  python_cells(engine);
}

TEST_CASE("process backend: expiry leaves nothing") { expiry(process_engine()); }

TEST_CASE("docker backend: expiry leaves nothing") { expiry(docker_engine()); }

TEST_CASE("docker backend: --docker-runtime runs every sandbox under that runtime (as runsc would be)") {
  Engine engine = docker_engine();
  engine.gateway_args.insert(engine.gateway_args.end(), {"--docker-runtime", kLoggedRuntime});
  Gateway gw(engine);
  const std::string id = gw.create({{"image", engine.image}, {"timeout", 600}});
  gw.wait_state(id, "Running");
  CHECK(gw.run(id, "echo under-runtime") == "under-runtime\n");
  const std::string container = docker_cli("ps -q --no-trunc --filter label=io.execd.sandbox=" + id);
  REQUIRE(container.size() > 12);
  CHECK(docker_cli("inspect -f '{{.HostConfig.Runtime}}' " + container.substr(0, 12)) == std::string(kLoggedRuntime) + "\n");
  // The engine really started it through that runtime, not only recorded the name.
  const std::string calls = execd::test::read_file(logged_runtime_dir().path() / "calls.log");
  INFO(calls);
  CHECK(calls.find("create") != std::string::npos);
  CHECK(calls.find(container.substr(0, container.size() - 1)) != std::string::npos);
  delete_leaving_nothing(gw, engine, id);
}
