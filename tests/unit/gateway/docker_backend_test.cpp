// The docker backend against a real engine: a private dockerd (tests/support), a
// busybox-only image imported through the Engine API, and execd from the bundle that
// tools/make_bundle.sh builds beside this test (unit/gateway/execd_bundle_dir.hpp names it).
#include <doctest/doctest.h>

#include <unistd.h>

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "gateway/backends/docker_backend.hpp"
#include "http/client.hpp"
#include "support/private_dockerd.hpp"
#include "support/temp_dir.hpp"
#include "unit/gateway/execd_bundle_dir.hpp"

using namespace execd;
using namespace execd::gateway;
using namespace std::chrono_literals;

namespace {

constexpr const char* kImage = "execd-test-busybox:latest";

/// One engine and one imported image for every case here: starting dockerd is a second,
/// importing the image another.
/// It stops when the test program exits (a static's destructor).
test::PrivateDockerd& dockerd() {
  static test::PrivateDockerd d;
  static const bool imported = (d.import_busybox_image(kImage), true);
  (void)imported;
  return d;
}

DockerBackendConfig config(const std::string& instance = "test-gw") {
  DockerBackendConfig c;
  c.docker_host = dockerd().host();
  c.instance = instance;
  c.bundle_dir = EXECD_BUNDLE_DIR;
  c.host_firewall = false;  // the host's own iptables are never touched by tests
  return c;
}

DockerBackend open_backend(const std::string& instance = "test-gw") {
  auto b = DockerBackend::open(config(instance));
  if (!b) FAIL("DockerBackend::open: " << b.error().message << "\ndockerd log:\n" << dockerd().log());
  return std::move(*b);
}

SandboxSpec busybox_spec(std::vector<std::string> entrypoint = {}) {
  SandboxSpec s;
  s.image = kImage;
  s.entrypoint = std::move(entrypoint);
  return s;
}

std::string unique_id(const char* what) {
  static int n = 0;
  return std::string(what) + "-" + std::to_string(getpid()) + "-" + std::to_string(++n);
}

core::Result<http::ClientResponse> execd_call(const Placement& p, const std::string& token, const std::string& method,
                                              const std::string& target, std::string body = "",
                                              const std::string& content_type = "application/json",
                                              std::chrono::milliseconds timeout = 10s) {
  http::ClientRequest req;
  req.method = method;
  req.target = target;
  req.timeout = timeout;
  if (!token.empty()) req.headers.emplace_back("X-EXECD-ACCESS-TOKEN", token);
  if (!body.empty()) {
    req.headers.emplace_back("Content-Type", content_type);
    req.body = std::move(body);
  }
  return http::send_request(http::ClientEndpoint{p.host, p.port, ""}, req);
}

/// Waits (30 s at most: the machine may be loaded) until execd in the sandbox answers /ping with `token`.
bool wait_ping(const Placement& p, const std::string& token) {
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = execd_call(p, token, "GET", "/ping", "", "", 1s);
    if (r && r->status == 200) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

/// Runs a shell command through execd's /command and returns its SSE stream whole.
std::string run_command(const Placement& p, const std::string& token, const std::string& command) {
  const std::string body = nlohmann::json{{"command", command}}.dump();
  auto r = execd_call(p, token, "POST", "/command", body, "application/json", 30s);
  REQUIRE_MESSAGE(r.ok(), (r ? "" : r.error().message));
  REQUIRE(r->status == 200);
  return r->body;
}

InstanceStatus::Phase wait_phase(DockerBackend& b, const Placement& p, InstanceStatus::Phase want,
                                 std::string* message = nullptr) {
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  InstanceStatus s;
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = b.inspect(p);
    REQUIRE_MESSAGE(r.ok(), (r ? "" : r.error().message));
    s = *r;
    if (s.phase == want) break;
    std::this_thread::sleep_for(100ms);
  }
  if (message != nullptr) *message = s.message;
  return s.phase;
}

bool network_exists(const std::string& name) {
  http::ClientRequest req;
  req.target = "/networks/" + name;
  auto r = http::send_request(http::ClientEndpoint{"", 0, dockerd().socket().string()}, req);
  REQUIRE(r.ok());
  return r->status == 200;
}

long read_counter(DockerBackend& b, const Placement& p) {
  // Through the container's root as the host sees it: readable while the container is frozen.
  // The loop renames each count into place, so a read never meets a truncated file.
  auto info = b.engine().inspect_container(p.handle);
  REQUIRE(info.ok());
  REQUIRE(info->state.pid > 0);
  const auto text = test::read_file("/proc/" + std::to_string(info->state.pid) + "/root/tmp/counter");
  REQUIRE_MESSAGE(!text.empty(), "the counter loop wrote nothing");
  return std::stol(text);
}

}  // namespace

TEST_CASE("docker backend: execd from the bundle serves a busybox-only image; remove leaves nothing") {
  auto b = open_backend();
  CHECK(b.name() == "docker");
  const auto id = unique_id("ping");
  const std::string token = "tok-" + id;
  auto spec = busybox_spec();
  spec.env = {{"GREETING", "hello-from-busybox"}};
  REQUIRE(b.validate(spec).ok());
  REQUIRE(b.has_room(spec).ok());

  auto placed = b.create(id, spec, token);
  REQUIRE_MESSAGE(placed.ok(), (placed ? "" : placed.error().message));
  const Placement p = *placed;
  CHECK(p.handle == "execd-" + id);
  CHECK(p.port == 44772);
  REQUIRE_MESSAGE(wait_ping(p, token), "execd in the container never answered /ping; dockerd log:\n" << dockerd().log());

  SUBCASE("the token is required") {
    auto anon = execd_call(p, "", "GET", "/ping");
    REQUIRE(anon.ok());
    CHECK(anon->status == 401);
    auto wrong = execd_call(p, "wrong", "GET", "/ping");
    REQUIRE(wrong.ok());
    CHECK(wrong->status == 401);
  }
  SUBCASE("a command runs, with the spec's env, in an image that has no libraries") {
    const auto out = run_command(p, token, "echo $GREETING; ls /lib /usr/lib 2>&1 | head -n 3; echo done");
    CHECK(out.find("\"text\":\"hello-from-busybox\"") != std::string::npos);
    CHECK(out.find("No such file or directory") != std::string::npos);  // nothing but busybox there
    CHECK(out.find("\"exit_code\":0") != std::string::npos);
  }
  SUBCASE("a file goes up and comes back down") {
    const std::string boundary = "execdboundary7f3a";
    const std::string content = "bundle says hi\n" + std::string(100000, 'x');
    std::string body;
    body += "--" + boundary + "\r\nContent-Disposition: form-data; name=\"metadata\"\r\nContent-Type: application/json\r\n\r\n";
    body += R"({"path":"/tmp/up.txt","mode":644})";
    body += "\r\n--" + boundary +
            "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"up.txt\"\r\nContent-Type: application/octet-stream\r\n\r\n";
    body += content + "\r\n--" + boundary + "--\r\n";
    auto up = execd_call(p, token, "POST", "/files/upload", body, "multipart/form-data; boundary=" + boundary);
    REQUIRE_MESSAGE(up.ok(), (up ? "" : up.error().message));
    CHECK_MESSAGE(up->status == 200, up->body);
    auto down = execd_call(p, token, "GET", "/files/download?path=/tmp/up.txt");
    REQUIRE_MESSAGE(down.ok(), (down ? "" : down.error().message));
    CHECK(down->status == 200);
    CHECK(down->body == content);
  }

  auto listed = b.list();
  REQUIRE(listed.ok());
  REQUIRE(listed->size() == 1);
  CHECK((*listed)[0].sandbox_id == id);
  CHECK((*listed)[0].placement.handle == p.handle);
  CHECK((*listed)[0].placement.host == p.host);
  CHECK((*listed)[0].status.phase == InstanceStatus::Phase::running);

  REQUIRE(b.remove(p).ok());
  auto gone = b.inspect(p);
  REQUIRE(gone.ok());
  CHECK(gone->phase == InstanceStatus::Phase::gone);
  CHECK_FALSE(network_exists(p.handle));
  auto after = b.list();
  REQUIRE(after.ok());
  CHECK(after->empty());
  CHECK(b.remove(p).ok());  // idempotent
}

TEST_CASE("docker backend: the memory limit kills and is reported as OOM") {
  auto b = open_backend();
  auto spec = busybox_spec({"sh", "-c", "exec dd if=/dev/zero of=/dev/null bs=256M count=1"});
  spec.limits.memory_bytes = 32ull << 20;
  auto placed = b.create(unique_id("oom"), spec, "tok");
  REQUIRE_MESSAGE(placed.ok(), (placed ? "" : placed.error().message));
  std::string message;
  CHECK(wait_phase(b, *placed, InstanceStatus::Phase::exited, &message) == InstanceStatus::Phase::exited);
  CHECK_MESSAGE(message.find("OOM killed") != std::string::npos, message);
  CHECK(b.remove(*placed).ok());
}

TEST_CASE("docker backend: the pids limit caps a fork loop") {
  auto b = open_backend();
  auto spec = busybox_spec();
  spec.limits.max_pids = 40;
  const std::string token = "tok-pids";
  auto placed = b.create(unique_id("pids"), spec, token);
  REQUIRE_MESSAGE(placed.ok(), (placed ? "" : placed.error().message));
  REQUIRE(wait_ping(*placed, token));
  // 100 background sleeps from a subshell that ends at the first fork the cap refuses; then
  // the pids cgroup's own count, read with builtins only (no fork is left to spare).
  const auto out = run_command(*placed, token,
                               "( i=0; while [ $i -lt 100 ]; do sleep 30 & i=$((i+1)); done ) 2>/dev/null; "
                               "f=/sys/fs/cgroup/pids; [ -d $f ] || f=/sys/fs/cgroup; "
                               "read cur < $f/pids.current; read max < $f/pids.max; echo current=$cur max=$max");
  const auto at = out.find("current=");
  REQUIRE_MESSAGE(at != std::string::npos, out);
  const int current = std::stoi(out.substr(at + 8));
  CHECK_MESSAGE(current >= 20, out);  // the loop did fork up to near the cap...
  CHECK_MESSAGE(current <= 40, out);  // ...and not past it (100 asked)
  CHECK(out.find("max=40") != std::string::npos);
  CHECK(b.remove(*placed).ok());
}

TEST_CASE("docker backend: pause freezes the sandbox, resume lets it go on") {
  auto b = open_backend();
  const std::string token = "tok-pause";
  auto placed = b.create(unique_id("pause"), busybox_spec({"sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/counter.new; mv /tmp/counter.new /tmp/counter; sleep 0.05; done"}), token);
  REQUIRE_MESSAGE(placed.ok(), (placed ? "" : placed.error().message));
  const Placement p = *placed;
  REQUIRE(wait_ping(p, token));
  std::this_thread::sleep_for(300ms);
  const long before_pause = read_counter(b, p);
  CHECK(before_pause > 0);

  REQUIRE(b.pause(p).ok());
  CHECK(wait_phase(b, p, InstanceStatus::Phase::paused) == InstanceStatus::Phase::paused);
  const long frozen = read_counter(b, p);
  std::this_thread::sleep_for(1s);
  CHECK(read_counter(b, p) == frozen);  // 1 s at 20 a second would be ~20 more
  auto ping = execd_call(p, token, "GET", "/ping", "", "", 500ms);
  CHECK_FALSE((ping.ok() && ping->status == 200));  // execd is frozen too

  REQUIRE(b.resume(p).ok());
  CHECK(wait_phase(b, p, InstanceStatus::Phase::running) == InstanceStatus::Phase::running);
  std::this_thread::sleep_for(500ms);
  CHECK(read_counter(b, p) > frozen + 3);
  CHECK(wait_ping(p, token));
  CHECK(b.remove(p).ok());
}

TEST_CASE("docker backend: a new backend finds this gateway's live containers by label, and only those") {
  auto first = open_backend("gw-restart");
  const auto a = unique_id("keep");
  const auto c = unique_id("keep");
  auto pa = first.create(a, busybox_spec(), "tok-a");
  REQUIRE_MESSAGE(pa.ok(), (pa ? "" : pa.error().message));
  auto pc = first.create(c, busybox_spec({"sleep", "600"}), "tok-c");
  REQUIRE_MESSAGE(pc.ok(), (pc ? "" : pc.error().message));

  auto restarted = open_backend("gw-restart");  // what a restarted gateway makes
  auto found = restarted.list();
  REQUIRE(found.ok());
  REQUIRE(found->size() == 2);
  for (const auto& in : *found) {
    const Placement& want = in.sandbox_id == a ? *pa : *pc;
    CHECK((in.sandbox_id == a || in.sandbox_id == c));
    CHECK(in.placement.handle == want.handle);
    CHECK(in.placement.host == want.host);
    CHECK(in.placement.port == want.port);
    CHECK(in.status.phase == InstanceStatus::Phase::running);
  }
  CHECK(wait_ping(found->front().placement, found->front().sandbox_id == a ? "tok-a" : "tok-c"));

  auto other = open_backend("gw-other");
  auto none = other.list();
  REQUIRE(none.ok());
  CHECK(none->empty());

  SUBCASE("the container cap and the engine's memory bound has_room") {
    auto capped_config = config("gw-restart");
    capped_config.max_containers = 2;
    auto capped = DockerBackend::open(capped_config);
    REQUIRE(capped.ok());
    auto full = capped->has_room(busybox_spec());
    REQUIRE_FALSE(full.ok());
    CHECK(full.error().code == core::Errc::unavailable);
    CHECK(full.error().message == "containers: 2 of 2 in use");

    auto info = restarted.engine().info();
    REQUIRE(info.ok());
    auto big = busybox_spec();
    big.limits.memory_bytes = info->mem_total / 5 * 3;  // a limit, not an allocation
    CHECK(restarted.has_room(big).ok());
    auto pbig = restarted.create(unique_id("big"), big, "tok-big");
    REQUIRE_MESSAGE(pbig.ok(), (pbig ? "" : pbig.error().message));
    auto over = restarted.has_room(big);
    REQUIRE_FALSE(over.ok());
    CHECK(over.error().code == core::Errc::unavailable);
    CHECK(over.error().message.rfind("memory: ", 0) == 0);
    CHECK(restarted.remove(*pbig).ok());
  }

  CHECK(restarted.remove(*pa).ok());
  CHECK(restarted.remove(*pc).ok());
  auto left = restarted.list();
  REQUIRE(left.ok());
  CHECK(left->empty());
}

TEST_CASE("docker backend: bad input is a clear invalid_argument and leaves nothing behind") {
  auto b = open_backend("gw-bad");
  auto missing = busybox_spec();
  missing.image = "no-such-image:1";
  auto v = b.validate(missing);
  REQUIRE_FALSE(v.ok());
  CHECK(v.error().code == core::Errc::invalid_argument);
  CHECK(v.error().message == "image not found: no-such-image:1");
  auto created = b.create(unique_id("missing"), missing, "tok");
  REQUIRE_FALSE(created.ok());
  CHECK(created.error().code == core::Errc::invalid_argument);
  auto listed = b.list();
  REQUIRE(listed.ok());
  CHECK(listed->empty());

  auto tiny = busybox_spec();
  tiny.limits.memory_bytes = 1 << 20;
  auto t = b.validate(tiny);
  REQUIRE_FALSE(t.ok());
  CHECK(t.error().message.rfind("resourceLimits.memory", 0) == 0);

  auto weird = busybox_spec();
  weird.image = "../../containers/json";
  auto w = b.validate(weird);
  REQUIRE_FALSE(w.ok());
  CHECK(w.error().code == core::Errc::invalid_argument);

  auto runsc = config("gw-bad");
  runsc.runtime = "runsc";
  auto r = DockerBackend::open(runsc);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == core::Errc::invalid_argument);
  CHECK(r.error().message.find("runtime 'runsc' is not configured") != std::string::npos);

  auto no_bundle = config("gw-bad");
  no_bundle.bundle_dir = "/nonexistent";
  auto nb = DockerBackend::open(no_bundle);
  REQUIRE_FALSE(nb.ok());
  CHECK(nb.error().message.find("not an execd bundle") != std::string::npos);
}
