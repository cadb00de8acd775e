// execd-gateway end to end with the process backend: the real build/execd-gateway
// starting real execd sandboxes (bubblewrap, cgroups), driven over HTTP as an SDK would.
#include <doctest/doctest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "support/daemon_process.hpp"
#include "support/proc_probe.hpp"
#include "support/http_checks.hpp"
#include "support/temp_dir.hpp"

using execd::test::check_error;
using execd::test::DaemonProcess;
using execd::test::Program;
using execd::test::TempDir;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr const char* kApiKey = "test-key-0123";

// The sandboxes' processes under `prefix` killed as if they crashed; the keepers stay.
std::string kill_keepers_under(const std::string& prefix) {
  return execd::test::kill_below_keepers_command(prefix, /*keepers_too=*/false);
}

/// A gateway on its own state directory. Whatever sandboxes a test leaves live are
/// deleted through the API at the end, so a failed check leaves no execd behind.
class Gateway {
 public:
  explicit Gateway(std::vector<std::string> extra = {}, const TempDir* shared_dir = nullptr)
      : dir_(shared_dir != nullptr ? shared_dir->str() : own_dir_.str()) {
    start(std::move(extra));
  }
  ~Gateway() {
    if (daemon_) {
      auto list = get("/v1/sandboxes?pageSize=1000");
      if (list && list->status == 200) {
        // Named: a range-for over json::parse(...)["items"] would iterate a member of a
        // temporary already destroyed (meson's MALLOC_PERTURB_ made that crash).
        const json listed = json::parse(list->body);
        for (const auto& s : listed["items"]) {
          const std::string state = s["status"]["state"];
          if (state != "Terminated" && state != "Failed") del("/v1/sandboxes/" + s["id"].get<std::string>());
        }
      }
      daemon_->stop(SIGTERM, 10s);
    }
    // Whatever a failed check left running under this state directory.
    execd::test::shell_output(kill_keepers_under(dir_ + "/sandboxes/"));
  }

  void start(std::vector<std::string> extra) {
    const char* execd = std::getenv("EXECD_BIN");
    REQUIRE(execd != nullptr);
    std::vector<std::string> args = {"--api-key", kApiKey, "--state-dir", dir_, "--execd-bin", execd,
                                     "--sandbox-start-timeout", "20s"};
    args.insert(args.end(), extra.begin(), extra.end());
    extra_ = extra;
    daemon_ = std::make_unique<DaemonProcess>(args, std::vector<std::string>{}, Program::gateway);
  }
  /// SIGTERM; the sandboxes keep running.
  void stop() {
    REQUIRE(daemon_->stop(SIGTERM, 10s) != -1);
    daemon_.reset();
  }
  /// A new gateway on the same state: the restart case.
  void start_again() { start(extra_); }

  std::unique_ptr<httplib::Client> client() const {
    auto c = daemon_->client();
    c->set_default_headers({{"OPEN-SANDBOX-API-KEY", kApiKey}});
    return c;
  }
  httplib::Result get(const std::string& path) const { return client()->Get(path); }
  httplib::Result post(const std::string& path, const std::string& body) const {
    return client()->Post(path, body, "application/json");
  }
  httplib::Result del(const std::string& path) const { return client()->Delete(path); }
  httplib::Result patch(const std::string& path, const std::string& body) const {
    return client()->Patch(path, body, "application/json");
  }
  [[nodiscard]] std::string log() const { return daemon_->log(); }
  [[nodiscard]] int port() const { return daemon_->port(); }
  [[nodiscard]] const std::string& dir() const { return dir_; }

  /// POST /v1/sandboxes; REQUIREs the 202 and returns the id.
  std::string create(const json& body) const {
    auto r = post("/v1/sandboxes", body.dump());
    REQUIRE(r);
    INFO(r->body);
    REQUIRE(r->status == 202);
    return json::parse(r->body)["id"];
  }
  json sandbox(const std::string& id) const {
    auto r = get("/v1/sandboxes/" + id);
    REQUIRE(r);
    INFO(r->body);
    REQUIRE(r->status == 200);
    return json::parse(r->body);
  }
  /// Polls until the sandbox is in `state` (or `timeout` passes: the test fails).
  json wait_state(const std::string& id, const std::string& state, std::chrono::milliseconds timeout = 30s) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    json s;
    while (std::chrono::steady_clock::now() < deadline) {
      s = sandbox(id);
      if (s["status"]["state"] == state) return s;
      std::this_thread::sleep_for(50ms);
    }
    INFO("last seen: " << s.dump());
    INFO("gateway log: " << log());
    FAIL("sandbox " << id << " did not become " << state);
    return s;
  }

 private:
  TempDir own_dir_;
  std::string dir_;
  std::vector<std::string> extra_;
  std::unique_ptr<DaemonProcess> daemon_;
};

struct Endpoint {
  std::string host;
  int port = 0;
  std::string token;
};

Endpoint endpoint_of(const Gateway& gw, const std::string& id) {
  auto r = gw.get("/v1/sandboxes/" + id + "/endpoints/44772");
  REQUIRE(r);
  INFO(r->body);
  REQUIRE(r->status == 200);
  const json j = json::parse(r->body);
  const std::string hp = j["endpoint"];
  const auto colon = hp.rfind(':');
  REQUIRE(colon != std::string::npos);
  return {hp.substr(0, colon), std::stoi(hp.substr(colon + 1)), j["headers"]["X-EXECD-ACCESS-TOKEN"]};
}

std::unique_ptr<httplib::Client> execd_client(const Endpoint& e, std::chrono::seconds timeout = 10s) {
  auto c = std::make_unique<httplib::Client>(e.host, e.port);
  c->set_connection_timeout(timeout);
  c->set_read_timeout(timeout);
  c->set_default_headers({{"X-EXECD-ACCESS-TOKEN", e.token}});
  return c;
}

std::string iso_in(std::chrono::seconds from_now) {
  const auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now() + from_now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

TEST_CASE("a sandbox's whole life: Pending, Running, a command, pause, resume, renew, metadata, delete") {
  Gateway gw;
  const auto before = std::chrono::steady_clock::now();
  auto r = gw.post("/v1/sandboxes", json{{"image", {{"uri", "host"}}},
                                          {"timeout", 600},
                                          {"resourceLimits", {{"cpu", "500m"}, {"memory", "256Mi"}}},
                                          {"env", {{"GREETING", "hello-from-env"}}},
                                          {"metadata", {{"team", "ml"}, {"project", "apollo"}}}}
                                         .dump());
  REQUIRE(r);
  INFO(r->body);
  REQUIRE(r->status == 202);
  const json created = json::parse(r->body);
  const std::string id = created["id"];
  CHECK(r->get_header_value("Location") == "/v1/sandboxes/" + id);
  CHECK(created["status"]["state"] == "Pending");
  CHECK(created["metadata"]["team"] == "ml");
  CHECK(created["expiresAt"].get<std::string>().back() == 'Z');
  CHECK(created["createdAt"].get<std::string>().back() == 'Z');
  CHECK(created["entrypoint"].is_array());

  const json running = gw.wait_state(id, "Running");
  MESSAGE("create -> Running: "
          << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - before).count()
          << " ms");
  CHECK(running["image"]["uri"] == "host");
  CHECK(running.contains("updatedAt"));

  // The sandbox's own execd, reached directly with its token; refused without it.
  const Endpoint ep = endpoint_of(gw, id);
  CHECK(ep.token.size() >= 64);
  auto exec = execd_client(ep);
  auto cmd = exec->Post("/command", R"({"command":"echo ran-$GREETING; pwd"})", "application/json");
  REQUIRE(cmd);
  CHECK(cmd->status == 200);
  CHECK(cmd->body.find("ran-hello-from-env") != std::string::npos);
  httplib::Client bare(ep.host, ep.port);
  auto refused = bare.Get("/ping");
  REQUIRE(refused);
  CHECK(refused->status == 401);

  // Pause freezes the whole sandbox (its execd too: /ping gets no answer); resume thaws it.
  auto paused = gw.post("/v1/sandboxes/" + id + "/pause", "");
  REQUIRE(paused);
  CHECK(paused->status == 202);
  CHECK(gw.sandbox(id)["status"]["state"] == "Paused");
  check_error(gw.post("/v1/sandboxes/" + id + "/pause", ""), 409, "CONFLICT", "Paused");
  auto frozen = execd_client(ep, 1s)->Get("/ping");
  CHECK_FALSE(frozen);
  auto resumed = gw.post("/v1/sandboxes/" + id + "/resume", "");
  REQUIRE(resumed);
  CHECK(resumed->status == 202);
  CHECK(gw.sandbox(id)["status"]["state"] == "Running");
  check_error(gw.post("/v1/sandboxes/" + id + "/resume", ""), 409, "CONFLICT", "Running");
  auto pong = exec->Get("/ping");
  REQUIRE(pong);
  CHECK(pong->status == 200);

  // Renew: a new absolute time; one in the past is refused.
  const std::string later = iso_in(2h);
  auto renewed = gw.post("/v1/sandboxes/" + id + "/renew-expiration", json{{"expiresAt", later}}.dump());
  REQUIRE(renewed);
  INFO(renewed->body);
  CHECK(renewed->status == 200);
  CHECK(json::parse(renewed->body)["expiresAt"].get<std::string>().substr(0, 19) == later.substr(0, 19));
  CHECK(gw.sandbox(id)["expiresAt"].get<std::string>().substr(0, 19) == later.substr(0, 19));
  check_error(gw.post("/v1/sandboxes/" + id + "/renew-expiration", json{{"expiresAt", iso_in(-60s)}}.dump()), 400,
              "INVALID_REQUEST_BODY", "not in the future");
  check_error(gw.post("/v1/sandboxes/" + id + "/renew-expiration", R"({"expiresAt":"tomorrow"})"), 400,
              "INVALID_REQUEST_BODY", "tomorrow");

  // Metadata: RFC 7396 merge; the reserved prefix is refused.
  auto patched = gw.patch("/v1/sandboxes/" + id + "/metadata", R"({"team":null,"env":"prod","gone":null})");
  REQUIRE(patched);
  CHECK(patched->status == 200);
  CHECK(json::parse(patched->body)["metadata"] == json{{"project", "apollo"}, {"env", "prod"}});
  check_error(gw.patch("/v1/sandboxes/" + id + "/metadata", R"({"opensandbox.io/owner":"me"})"), 400,
              "INVALID_REQUEST_BODY", "reserved");

  // List by state and metadata.
  auto listed = gw.get("/v1/sandboxes?state=Running&state=Paused&metadata=env%3Dprod%26project%3Dapollo");
  REQUIRE(listed);
  const json page = json::parse(listed->body);
  REQUIRE(page["items"].size() == 1);
  CHECK(page["items"][0]["id"] == id);
  CHECK(page["pagination"]["totalItems"] == 1);
  auto none = gw.get("/v1/sandboxes?metadata=env%3Dstaging");
  REQUIRE(none);
  CHECK(json::parse(none->body)["items"].empty());

  // Delete: 204, Terminated, and nothing left of it (execd gone, its directory gone).
  const std::string sandbox_dir = gw.dir() + "/sandboxes/" + id;
  CHECK(std::filesystem::exists(sandbox_dir));
  auto deleted = gw.del("/v1/sandboxes/" + id);
  REQUIRE(deleted);
  CHECK(deleted->status == 204);
  const json ended = gw.sandbox(id);
  CHECK(ended["status"]["state"] == "Terminated");
  CHECK(ended["status"]["reason"] == "user_delete");
  CHECK_FALSE(execd_client(ep, 2s)->Get("/ping"));
  CHECK_FALSE(std::filesystem::exists(sandbox_dir));
  CHECK(execd::test::shell_output("pgrep -f '[e]xecd-sandbox-keeper " + sandbox_dir + "/' || true").empty());
  check_error(gw.del("/v1/sandboxes/" + id), 409, "CONFLICT", "Terminated");
  check_error(gw.get("/v1/sandboxes/" + id + "/endpoints/44772"), 409, "CONFLICT", "Terminated");
}

TEST_CASE("a sandbox expires at its timeout and is reaped") {
  Gateway gw;
  const std::string id = gw.create({{"image", {{"uri", "host"}}}, {"timeout", 2}});
  gw.wait_state(id, "Running");
  const Endpoint ep = endpoint_of(gw, id);
  const json ended = gw.wait_state(id, "Terminated", 15s);
  CHECK(ended["status"]["reason"] == "ttl_expiry");
  CHECK_FALSE(execd_client(ep, 2s)->Get("/ping"));
  CHECK_FALSE(std::filesystem::exists(gw.dir() + "/sandboxes/" + id));
}

TEST_CASE("a sandbox whose execd dies is reported Failed with everything removed") {
  Gateway gw;
  const std::string id = gw.create({{"image", {{"uri", "host"}}}});
  gw.wait_state(id, "Running");
  const Endpoint ep = endpoint_of(gw, id);
  execd::test::shell_output(kill_keepers_under(gw.dir() + "/sandboxes/" + id + "/"));
  CHECK_FALSE(execd_client(ep, 2s)->Get("/ping"));
  const json failed = gw.wait_state(id, "Failed", 15s);
  INFO(failed.dump());
  CHECK(failed["status"]["message"].get<std::string>().size() > 0);
  CHECK_FALSE(std::filesystem::exists(gw.dir() + "/sandboxes/" + id));
}

TEST_CASE("a restarted gateway keeps serving the sandboxes that still run") {
  TempDir dir;
  Gateway gw({}, &dir);
  const std::string id = gw.create({{"image", {{"uri", "host"}}}, {"metadata", {{"keep", "yes"}}}});
  gw.wait_state(id, "Running");
  const Endpoint before = endpoint_of(gw, id);
  gw.stop();
  gw.start_again();
  const json again = gw.sandbox(id);
  CHECK(again["status"]["state"] == "Running");
  CHECK(again["metadata"]["keep"] == "yes");
  const Endpoint after = endpoint_of(gw, id);
  CHECK(after.port == before.port);
  CHECK(after.token == before.token);
  auto pong = execd_client(after)->Get("/ping");
  REQUIRE(pong);
  CHECK(pong->status == 200);
}

TEST_CASE("a row whose instance died while the gateway was down becomes Failed at start") {
  TempDir dir;
  Gateway gw({}, &dir);
  const std::string id = gw.create({{"image", {{"uri", "host"}}}});
  gw.wait_state(id, "Running");
  const Endpoint ep = endpoint_of(gw, id);
  gw.stop();
  execd::test::shell_output(kill_keepers_under(gw.dir() + "/sandboxes/" + id + "/"));
  CHECK_FALSE(execd_client(ep, 2s)->Get("/ping"));
  gw.start_again();
  const json s = gw.wait_state(id, "Failed", 15s);
  CHECK_FALSE(s["status"]["message"].get<std::string>().empty());
  CHECK_FALSE(std::filesystem::exists(gw.dir() + "/sandboxes/" + id));
}

TEST_CASE("fifty sandboxes created at once all run; past --max-sandboxes a create is 503 CAPACITY") {
  Gateway gw({"--max-sandboxes", "50"});
  std::vector<std::string> ids(50);
  std::vector<std::thread> threads;
  std::atomic<int> accepted{0};
  for (size_t i = 0; i < ids.size(); ++i) {
    threads.emplace_back([&, i] {
      auto r = gw.post("/v1/sandboxes", json{{"image", {{"uri", "host"}}}, {"timeout", 600}}.dump());
      if (r && r->status == 202) {
        ids[i] = json::parse(r->body)["id"];
        ++accepted;
      }
    });
  }
  for (auto& t : threads) t.join();
  REQUIRE(accepted == 50);
  check_error(gw.post("/v1/sandboxes", json{{"image", {{"uri", "host"}}}}.dump()), 503, "CAPACITY", "max-sandboxes");
  for (const auto& id : ids) gw.wait_state(id, "Running", 120s);
  auto listed = gw.get("/v1/sandboxes?state=Running&pageSize=20&page=3");
  REQUIRE(listed);
  const json page = json::parse(listed->body);
  CHECK(page["items"].size() == 10);
  CHECK(page["pagination"]["totalItems"] == 50);
  CHECK(page["pagination"]["totalPages"] == 3);
  CHECK(page["pagination"]["hasNextPage"] == false);
  // Deleting one frees a place.
  REQUIRE(gw.del("/v1/sandboxes/" + ids[0])->status == 204);
  CHECK(gw.post("/v1/sandboxes", json{{"image", {{"uri", "host"}}}}.dump())->status == 202);
}

TEST_CASE("a warm pool answers a matching create already Running, and refills") {
  Gateway gw({"--pool", "host=2"});
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  json health;
  while (std::chrono::steady_clock::now() < deadline) {
    health = json::parse(gw.get("/health")->body);
    if (health["pooled"] == 2 && !health["sandboxes"].contains("Pending")) break;
    std::this_thread::sleep_for(50ms);
  }
  INFO(health.dump());
  REQUIRE(health["pooled"] == 2);
  // Pool members are not anyone's sandboxes yet.
  CHECK(json::parse(gw.get("/v1/sandboxes")->body)["items"].empty());

  const auto t0 = std::chrono::steady_clock::now();
  auto r = gw.post("/v1/sandboxes", json{{"image", {{"uri", "host"}}}, {"metadata", {{"from", "pool"}}}, {"timeout", 300}}.dump());
  const auto took = std::chrono::steady_clock::now() - t0;
  REQUIRE(r);
  REQUIRE(r->status == 202);
  const json claimed = json::parse(r->body);
  CHECK(claimed["status"]["state"] == "Running");
  CHECK(claimed["metadata"]["from"] == "pool");
  CHECK(claimed.contains("expiresAt"));
  MESSAGE("create from the pool, HTTP round trip: "
          << std::chrono::duration_cast<std::chrono::microseconds>(took).count() << " us");
  CHECK(took < 10ms);
  auto pong = execd_client(endpoint_of(gw, claimed["id"]))->Get("/ping");
  REQUIRE(pong);
  CHECK(pong->status == 200);

  // A create with limits is not a pool match: it starts Pending.
  const json fresh = json::parse(
      gw.post("/v1/sandboxes", json{{"image", {{"uri", "host"}}}, {"resourceLimits", {{"memory", "128Mi"}}}}.dump())->body);
  CHECK(fresh["status"]["state"] == "Pending");

  bool refilled = false;
  const auto refill_deadline = std::chrono::steady_clock::now() + 30s;
  while (!refilled && std::chrono::steady_clock::now() < refill_deadline) {
    refilled = json::parse(gw.get("/health")->body)["pooled"] == 2;
    std::this_thread::sleep_for(50ms);
  }
  CHECK(refilled);
}

TEST_CASE("bad input is a 4xx JSON error naming the problem") {
  Gateway gw;
  auto create = [&](const std::string& body) { return gw.post("/v1/sandboxes", body); };
  check_error(create(R"({"image":{"uri":"no-such-image"}})"), 400, "INVALID_REQUEST_BODY", "no-such-image");
  check_error(create(R"({"image":{"uri":"host"},"timeout":-5})"), 400, "INVALID_REQUEST_BODY", "timeout");
  check_error(create(R"({"image":{"uri":"host"},"timeout":"soon"})"), 400, "INVALID_REQUEST_BODY", "timeout");
  check_error(create(R"({"image":{"uri":"host"},"resourceLimits":{"memory":"lots"}})"), 400, "INVALID_REQUEST_BODY",
              "resourceLimits.memory");
  check_error(create(R"({"image":{"uri":"host"},"resourceLimits":{"cpu":"-1"}})"), 400, "INVALID_REQUEST_BODY",
              "resourceLimits.cpu");
  check_error(create(R"({"image":{"uri":"host"},"entrypoint":"sleep 1"})"), 400, "INVALID_REQUEST_BODY",
              "entrypoint");
  check_error(create(R"({"image":{"uri":"host"},"metadata":{"bad key":"x"}})"), 400, "INVALID_REQUEST_BODY",
              "bad key");
  check_error(create(R"({"timeout":60})"), 400, "INVALID_REQUEST_BODY", "image");
  check_error(create("not json"), 400, "INVALID_REQUEST_BODY", "request body");
  check_error(create(R"({"snapshotId":"snap_1"})"), 501, "NOT_SUPPORTED", "snapshot");
  check_error(gw.get("/v1/sandboxes/nope"), 404, "NOT_FOUND", "nope");
  check_error(gw.del("/v1/sandboxes/nope"), 404, "NOT_FOUND", "nope");
  check_error(gw.post("/v1/sandboxes/nope/pause", ""), 404, "NOT_FOUND", "nope");
  check_error(gw.get("/v1/sandboxes/nope/endpoints/44772"), 404, "NOT_FOUND", "nope");
  check_error(gw.get("/v1/sandboxes/nope/endpoints/70000"), 400, "INVALID_REQUEST_BODY", "port");
  check_error(gw.get("/v1/sandboxes?state=Sleeping"), 400, "INVALID_REQUEST_BODY", "Sleeping");
  check_error(gw.get("/v1/sandboxes?pageSize=0"), 400, "INVALID_REQUEST_BODY", "pageSize");
  check_error(gw.get("/v1/snapshots"), 501, "NOT_SUPPORTED", "snapshots");
  // Without the API key nothing is served.
  auto c = httplib::Client("127.0.0.1", gw.port());
  check_error(c.Get("/v1/sandboxes"), 401, "UNAUTHORIZED", "OPEN-SANDBOX-API-KEY");
  // Nothing was created by any of it.
  CHECK(json::parse(gw.get("/v1/sandboxes")->body)["items"].empty());
}
