// Overflow to a remote peer, for real: two execd-gateways on loopback with the process
// backend. "local" is capped at 3 sandboxes and has "cloud" as its --remote peer; the
// 4th and later sandboxes land in the cloud and every request for them goes through the
// local gateway, which forwards to the peer that owns them.
#include <chrono>
#include <filesystem>
#include <thread>

#include "gateway_harness.hpp"
#include "support/http_checks.hpp"
#include "support/sse_reader.hpp"

using execd::test::check_error;
using execd::test::TempDir;
using gateway_harness::Gateway;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr const char* kLocalKey = "local-key-0123";
constexpr const char* kCloudKey = "cloud-key-4567";

json host_sandbox(int timeout_s = 600) {
  return {{"image", {{"uri", "host"}}}, {"timeout", timeout_s}};
}

std::string proxy_path(const std::string& id, const std::string& rest) {
  return "/v1/sandboxes/" + id + "/proxy/44772" + rest;
}

struct Pair {
  TempDir cloud_dir;
  TempDir local_dir;
  std::unique_ptr<Gateway> cloud;
  std::unique_ptr<Gateway> local;
  Pair() {
    cloud = std::make_unique<Gateway>(cloud_dir.str(), kCloudKey, std::vector<std::string>{});
    local = std::make_unique<Gateway>(
        local_dir.str(), kLocalKey,
        std::vector<std::string>{"--max-sandboxes", "3", "--remote", cloud->url(), "--remote-api-key", kCloudKey});
  }
  ~Pair() {
    // The local gateway deletes its own and (through the peer) the cloud's; then the
    // cloud whatever is left; then anything a failed check left running.
    if (local) local->cleanup();
    if (cloud && cloud->is_up()) cloud->cleanup();
    local.reset();
    cloud.reset();
    execd::test::shell_output(gateway_harness::kill_keepers_under(local_dir.str() + "/sandboxes/"));
    execd::test::shell_output(gateway_harness::kill_keepers_under(cloud_dir.str() + "/sandboxes/"));
  }
};

}  // namespace

TEST_CASE("past its cap the local gateway places sandboxes on its peer and serves them through it") {
  Pair p;
  Gateway& local = *p.local;
  Gateway& cloud = *p.cloud;

  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    const json created = local.create(host_sandbox());
    ids.push_back(created["id"]);
    if (i >= 3) {
      INFO(created.dump());
      CHECK(created["status"]["reason"] == "overflow");
      CHECK(created["status"]["message"].get<std::string>().find(cloud.url()) != std::string::npos);
    }
  }
  for (const auto& id : ids) local.wait_state(id, "Running");

  // The first three run here, the 4th and 5th in the cloud, under the same ids there.
  for (int i = 0; i < 5; ++i) {
    const bool remote = i >= 3;
    CHECK(std::filesystem::exists(local.dir() + "/sandboxes/" + ids[i]) == !remote);
    CHECK(std::filesystem::exists(cloud.dir() + "/sandboxes/" + ids[i]) == remote);
    auto there = cloud.get("/v1/sandboxes/" + ids[i]);
    REQUIRE(there);
    CHECK(there->status == (remote ? 200 : 404));
  }
  const std::string a = ids[3];
  const std::string b = ids[4];

  // The listing shows all five, the cloud's with the state the cloud reports.
  {
    auto listed = local.get("/v1/sandboxes?state=Running");
    REQUIRE(listed);
    const json page = json::parse(listed->body);
    CHECK(page["pagination"]["totalItems"] == 5);
  }

  // Proxy: /ping, a streamed command (each event as it happens), a 50 MB upload and its download.
  auto c = local.client();
  c->set_read_timeout(60s);
  c->set_write_timeout(60s);
  auto pong = c->Get(proxy_path(a, "/ping"));
  REQUIRE(pong);
  CHECK(pong->status == 200);

  execd::test::SseRequest cmd;
  cmd.method = "POST";
  cmd.path = proxy_path(a, "/command");
  cmd.body = R"({"command":"for i in 1 2 3; do echo tick$i; sleep 0.4; done"})";
  cmd.headers = {{"OPEN-SANDBOX-API-KEY", kLocalKey}};
  const auto t0 = std::chrono::steady_clock::now();
  std::chrono::steady_clock::duration first_tick{};
  cmd.on_event = [&](const execd::test::SseEvent& e) {
    if (e.type() == "stdout" && first_tick.count() == 0) first_tick = std::chrono::steady_clock::now() - t0;
    return true;
  };
  const auto streamed = execd::test::sse_request(local.port(), cmd);
  const auto total = std::chrono::steady_clock::now() - t0;
  INFO(streamed.raw);
  CHECK(streamed.status == 200);
  CHECK(streamed.ended);
  const auto outs = streamed.of_type("stdout");
  REQUIRE(outs.size() == 3);
  CHECK(outs[0].json["text"] == "tick1");
  CHECK(outs[2].json["text"] == "tick3");
  CHECK(streamed.of_type("execution_complete").size() == 1);
  // Streamed through both gateways as it ran, not held until the end.
  CHECK(first_tick.count() > 0);
  CHECK(total - first_tick >= 600ms);

  const std::string big = gateway_harness::pattern_bytes(50u << 20);
  httplib::MultipartFormDataItems items = {
      {"metadata", json{{"path", "/workspace/big.bin"}}.dump(), "metadata", "application/json"},
      {"file", big, "big.bin", "application/octet-stream"}};
  auto up = c->Post(proxy_path(a, "/files/upload"), items);
  REQUIRE(up);
  INFO(up->body);
  CHECK(up->status == 200);
  auto down = c->Get(proxy_path(a, "/files/download?path=/workspace/big.bin"));
  REQUIRE(down);
  CHECK(down->status == 200);
  CHECK(down->body.size() == big.size());
  CHECK(down->body == big);

  // Endpoints: direct mode hands out what the cloud hands out (the sandbox's own execd).
  {
    auto ep = local.get("/v1/sandboxes/" + a + "/endpoints/44772");
    REQUIRE(ep);
    INFO(ep->body);
    REQUIRE(ep->status == 200);
    const json j = json::parse(ep->body);
    const std::string hp = j["endpoint"];
    httplib::Client direct("http://" + hp);
    direct.set_default_headers({{"X-EXECD-ACCESS-TOKEN", j["headers"]["X-EXECD-ACCESS-TOKEN"].get<std::string>()}});
    auto direct_pong = direct.Get("/ping");
    REQUIRE(direct_pong);
    CHECK(direct_pong->status == 200);
    auto proxied = local.get("/v1/sandboxes/" + a + "/endpoints/44772?use_server_proxy=true");
    REQUIRE(proxied);
    CHECK(json::parse(proxied->body)["endpoint"] ==
          "http://127.0.0.1:" + std::to_string(local.port()) + "/v1/sandboxes/" + a + "/proxy/44772");
  }

  // Lifecycle calls go to the cloud and show there.
  auto paused = local.post("/v1/sandboxes/" + a + "/pause", "");
  REQUIRE(paused);
  CHECK(paused->status == 202);
  CHECK(cloud.sandbox(a)["status"]["state"] == "Paused");
  CHECK(local.sandbox(a)["status"]["state"] == "Paused");
  auto resumed = local.post("/v1/sandboxes/" + a + "/resume", "");
  REQUIRE(resumed);
  CHECK(resumed->status == 202);
  CHECK(cloud.sandbox(a)["status"]["state"] == "Running");
  auto patched = local.patch("/v1/sandboxes/" + a + "/metadata", R"({"tier":"cloud"})");
  REQUIRE(patched);
  CHECK(patched->status == 200);
  CHECK(cloud.sandbox(a)["metadata"]["tier"] == "cloud");
  check_error(local.patch("/v1/sandboxes/" + a + "/metadata", R"({"opensandbox.io/x":"y"})"), 400,
              "INVALID_REQUEST_BODY", "reserved");
  auto renewed =
      local.post("/v1/sandboxes/" + a + "/renew-expiration", json{{"expiresAt", "2099-01-01T00:00:00Z"}}.dump());
  REQUIRE(renewed);
  INFO(renewed->body);
  CHECK(renewed->status == 200);
  CHECK(cloud.sandbox(a)["expiresAt"].get<std::string>().substr(0, 10) == "2099-01-01");

  // Delete across: the cloud removes it and both say Terminated.
  auto deleted = local.del("/v1/sandboxes/" + b);
  REQUIRE(deleted);
  CHECK(deleted->status == 204);
  CHECK(local.sandbox(b)["status"]["state"] == "Terminated");
  CHECK(cloud.sandbox(b)["status"]["state"] == "Terminated");
  CHECK_FALSE(std::filesystem::exists(cloud.dir() + "/sandboxes/" + b));
  check_error(local.get("/v1/sandboxes/" + b + "/endpoints/44772"), 409, "CONFLICT", "Terminated");

  // Expiry across: the cloud expires its copy; the local row follows.
  const std::string short_lived = local.create(host_sandbox(3))["id"];
  CHECK(local.sandbox(short_lived)["status"]["reason"] != "ttl_expiry");
  const json expired = local.wait_state(short_lived, "Terminated", 30s);
  CHECK(expired["status"]["reason"] == "ttl_expiry");
  CHECK(cloud.sandbox(short_lived)["status"]["state"] == "Terminated");
  CHECK_FALSE(std::filesystem::exists(cloud.dir() + "/sandboxes/" + short_lived));

  // The peer goes down: a new overflow is a 503 naming it; the sandboxes it holds answer
  // 502 naming it (lifecycle and proxy), and nothing here changes their rows.
  const int cloud_port = cloud.port();
  const std::string cloud_url = cloud.url();
  cloud.kill();
  check_error(local.post("/v1/sandboxes", host_sandbox().dump()), 503, "UNAVAILABLE", cloud_url);
  check_error(local.get("/v1/sandboxes/" + a), 502, "BAD_GATEWAY", cloud_url);
  check_error(local.del("/v1/sandboxes/" + a), 502, "BAD_GATEWAY", cloud_url);
  check_error(
      local.post("/v1/sandboxes/" + a + "/renew-expiration", json{{"expiresAt", "2099-01-02T00:00:00Z"}}.dump()), 502,
      "BAD_GATEWAY", cloud_url);
  check_error(c->Get(proxy_path(a, "/ping")), 502, "BAD_GATEWAY", "127.0.0.1:" + std::to_string(cloud_port));
  // Local sandboxes are unaffected.
  auto local_pong = c->Get(proxy_path(ids[0], "/ping"));
  REQUIRE(local_pong);
  CHECK(local_pong->status == 200);

  // Back on the same port and state: its sandboxes survived, and work through here again.
  cloud.start({"--port", std::to_string(cloud_port)});
  REQUIRE(cloud.port() == cloud_port);
  CHECK(local.sandbox(a)["status"]["state"] == "Running");
  auto pong_again = c->Get(proxy_path(a, "/ping"));
  REQUIRE(pong_again);
  CHECK(pong_again->status == 200);
  auto kept = c->Get(proxy_path(a, "/files/info?path=/workspace/big.bin"));
  REQUIRE(kept);
  INFO(kept->body);
  CHECK(kept->status == 200);
  CHECK(kept->body.find(std::to_string(big.size())) != std::string::npos);
  const json placed_again = local.create(host_sandbox());
  CHECK(placed_again["status"]["reason"] == "overflow");
  local.wait_state(placed_again["id"], "Running");
}

TEST_CASE("without a peer a full gateway is 503 CAPACITY; a chosen id is honoured once and checked") {
  TempDir dir;
  Gateway gw(dir.str(), kLocalKey, {"--max-sandboxes", "1"});
  auto r = gw.client()->Post("/v1/sandboxes", {{"X-Execd-Sandbox-Id", "chosen-id-1"}}, host_sandbox().dump(),
                             "application/json");
  REQUIRE(r);
  INFO(r->body);
  REQUIRE(r->status == 202);
  CHECK(json::parse(r->body)["id"] == "chosen-id-1");
  check_error(gw.client()->Post("/v1/sandboxes", {{"X-Execd-Sandbox-Id", "chosen-id-1"}}, host_sandbox().dump(),
                                "application/json"),
              409, "CONFLICT", "chosen-id-1");
  check_error(
      gw.client()->Post("/v1/sandboxes", {{"X-Execd-Sandbox-Id", "../etc"}}, host_sandbox().dump(), "application/json"),
      400, "INVALID_REQUEST_BODY", "X-Execd-Sandbox-Id");
  check_error(gw.post("/v1/sandboxes", host_sandbox().dump()), 503, "CAPACITY", "max-sandboxes");
  gw.wait_state("chosen-id-1", "Running");
}
