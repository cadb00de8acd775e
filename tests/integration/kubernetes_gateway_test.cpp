// execd-gateway --backend kubernetes, the real program, against the Kubernetes API-server
// STAND-IN (tests/k8s/apiserver_standin.py; not Kubernetes: see docs/KUBERNETES.md for
// what has and has not run against a live cluster). Driven over HTTP as an SDK would:
// create -> Running once the pod is Ready and its execd answers /ping through the pod
// IP, a command through the gateway's proxy, pause refused with 501, delete -> the pod
// and its Secret gone; and a gateway restarted on the same table serving the same pod.
#include <doctest/doctest.h>
#include <httplib.h>
#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "k8s/api_standin.hpp"
#include "support/daemon_process.hpp"
#include "support/http_checks.hpp"
#include "support/temp_dir.hpp"

using execd::test::ApiStandIn;
using execd::test::check_error;
using execd::test::DaemonProcess;
using execd::test::Program;
using execd::test::TempDir;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr const char* kApiKey = "k8s-test-key";

std::string env_or_fail(const char* name) {
  const char* v = std::getenv(name);
  REQUIRE_MESSAGE(v != nullptr, (std::string(name) + " is not set (meson sets it)"));
  return v;
}

std::unique_ptr<DaemonProcess> start_gateway(const ApiStandIn& api, const TempDir& state,
                                             std::vector<std::string> extra = {}) {
  std::vector<std::string> args{"--api-key",
                                kApiKey,
                                "--backend",
                                "kubernetes",
                                "--kubeconfig",
                                api.kubeconfig(api.token()),
                                "--state-dir",
                                state.str(),
                                "--k8s-ready-timeout",
                                "30s",
                                "--sandbox-start-timeout",
                                "30s"};
  args.insert(args.end(), extra.begin(), extra.end());
  return std::make_unique<DaemonProcess>(args, std::vector<std::string>{}, Program::gateway);
}

httplib::Headers auth() {
  return {{"OPEN-SANDBOX-API-KEY", kApiKey}};
}

json wait_state(httplib::Client& c, const std::string& id, const std::string& want) {
  const auto deadline = std::chrono::steady_clock::now() + 40s;
  json s;
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = c.Get("/v1/sandboxes/" + id, auth());
    REQUIRE(r);
    s = json::parse(r->body);
    if (s["status"]["state"] == want || s["status"]["state"] == "Failed") break;
    std::this_thread::sleep_for(100ms);
  }
  return s;
}

}  // namespace

TEST_CASE(
    "gateway on the kubernetes backend (API stand-in): lifecycle over HTTP, proxy, pause refused, delete, restart") {
  ApiStandIn api(env_or_fail("K8S_SOURCE_ROOT"), env_or_fail("EXECD_BIN"));
  TempDir state;
  auto gw = start_gateway(api, state);
  auto c = gw->client();

  auto created = c->Post("/v1/sandboxes", auth(),
                         R"({"image":{"uri":"debian:bookworm-slim"},"timeout":600,
                             "resourceLimits":{"cpu":"500m","memory":"256Mi"},"metadata":{"project":"k8s"}})",
                         "application/json");
  REQUIRE(created);
  REQUIRE_MESSAGE(created->status == 202, created->body);
  const std::string id = json::parse(created->body)["id"];
  const json running = wait_state(*c, id, "Running");
  REQUIRE_MESSAGE(running["status"]["state"] == "Running", running.dump());

  // The pod the gateway made, as the API holds it.
  int status = 0;
  const json pods = api.get("/api/v1/namespaces/sandboxes/pods?labelSelector=execd.io%2Fsandbox%3D" + id, &status);
  REQUIRE(status == 200);
  REQUIRE(pods["items"].size() == 1);
  const json& pod = pods["items"][0];
  CHECK(pod["spec"]["automountServiceAccountToken"] == false);
  CHECK(pod["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "500m");

  // Through the gateway's proxy to the pod's execd (the gateway adds the sandbox token).
  auto cmd = c->Post("/v1/sandboxes/" + id + "/proxy/44772/command", auth(), R"({"command":"echo hello-from-k8s"})",
                     "application/json");
  REQUIRE(cmd);
  CHECK(cmd->status == 200);
  CHECK(cmd->body.find("hello-from-k8s") != std::string::npos);

  // Kubernetes cannot freeze a pod: a clear 501 JSON, and the sandbox keeps running.
  check_error(c->Post("/v1/sandboxes/" + id + "/pause", auth(), "", "application/json"), 501, "NOT_SUPPORTED",
              "cannot pause");
  CHECK(wait_state(*c, id, "Running")["status"]["state"] == "Running");

  // A gateway restarted on the same table finds the pod by its labels and serves it.
  REQUIRE(gw->stop(SIGTERM, 10s) != -1);
  gw = start_gateway(api, state);
  c = gw->client();
  CHECK(wait_state(*c, id, "Running")["status"]["state"] == "Running");
  auto again = c->Post("/v1/sandboxes/" + id + "/proxy/44772/command", auth(), R"({"command":"echo still-here"})",
                       "application/json");
  REQUIRE(again);
  CHECK(again->body.find("still-here") != std::string::npos);

  auto deleted = c->Delete("/v1/sandboxes/" + id, auth());
  REQUIRE(deleted);
  CHECK(deleted->status == 204);
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  json left;
  while (std::chrono::steady_clock::now() < deadline) {
    left = api.get("/api/v1/namespaces/sandboxes/pods?labelSelector=execd.io%2Fsandbox%3D" + id);
    if (left["items"].empty()) break;
    std::this_thread::sleep_for(100ms);
  }
  CHECK(left["items"].empty());
  (void)api.get("/api/v1/namespaces/sandboxes/secrets/" + pod["metadata"]["name"].get<std::string>() + "-token",
                &status);
  CHECK(status == 404);
  const json stats = api.stats();
  CHECK_MESSAGE(stats["invalid"].empty(), stats["invalid"].dump());
  CHECK(stats["validated"].get<int>() >= 3);
}

TEST_CASE("gateway on the kubernetes backend (API stand-in): bad input and a cluster past its watermark") {
  ApiStandIn api(env_or_fail("K8S_SOURCE_ROOT"), env_or_fail("EXECD_BIN"), {"--node-cpu", "1"});
  TempDir state;
  auto gw = start_gateway(api, state);
  auto c = gw->client();
  check_error(c->Post("/v1/sandboxes", auth(), R"({"image":{"uri":"busybox"},"resourceLimits":{"pids":"64"}})",
                      "application/json"),
              400, "INVALID_REQUEST_BODY", "resourceLimits.pids");
  // Two nodes of one core: 1.8 cores asked passes the 80% cpu watermark.
  check_error(c->Post("/v1/sandboxes", auth(), R"({"image":{"uri":"busybox"},"resourceLimits":{"cpu":"1800m"}})",
                      "application/json"),
              503, "CAPACITY", "cpu:");
  CHECK(api.stats()["invalid"].empty());
}

TEST_CASE(
    "gateway on the kubernetes backend (API stand-in): a lost table is rebuilt from the pods; what expired meanwhile "
    "is reaped") {
  ApiStandIn api(env_or_fail("K8S_SOURCE_ROOT"), env_or_fail("EXECD_BIN"));
  TempDir state;
  // As a replica (deploy/k8s runs them so): its pods carry it as their owner, and a
  // replica rebuilds rows for its own pods it has none for. (A lone gateway removes
  // instances it has no row for.)
  const std::vector<std::string> replica{"--replica-id", "gw-a", "--advertise-url", "http://127.0.0.1:9"};
  auto gw = start_gateway(api, state, replica);
  auto c = gw->client();
  auto create = [&](int timeout) {
    auto r = c->Post("/v1/sandboxes", auth(),
                     R"({"image":{"uri":"busybox"},"timeout":)" + std::to_string(timeout) + "}", "application/json");
    REQUIRE(r);
    REQUIRE_MESSAGE(r->status == 202, r->body);
    return json::parse(r->body)["id"].get<std::string>();
  };
  const std::string keeps = create(600);
  const std::string expires = create(4);
  REQUIRE(wait_state(*c, keeps, "Running")["status"]["state"] == "Running");
  REQUIRE(wait_state(*c, expires, "Running")["status"]["state"] == "Running");

  // The gateway goes away with its table; the sandbox with 4 s to live expires meanwhile.
  REQUIRE(gw->stop(SIGTERM, 10s) != -1);
  gw.reset();
  for (const auto& e : std::filesystem::directory_iterator(state.path())) {
    if (e.path().filename().string().rfind("gateway.db", 0) == 0) std::filesystem::remove(e.path());
  }
  std::this_thread::sleep_for(5s);
  gw = start_gateway(api, state, replica);
  c = gw->client();

  // The row comes back from the pod's annotations and Secret: same token, same proxy.
  const json row = wait_state(*c, keeps, "Running");
  CHECK_MESSAGE(row["status"]["state"] == "Running", row.dump());
  auto cmd = c->Post("/v1/sandboxes/" + keeps + "/proxy/44772/command", auth(), R"({"command":"echo rebuilt"})",
                     "application/json");
  REQUIRE(cmd);
  CHECK(cmd->body.find("rebuilt") != std::string::npos);
  // The one that expired while no gateway ran: its pod is deleted.
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  json left;
  while (std::chrono::steady_clock::now() < deadline) {
    left = api.get("/api/v1/namespaces/sandboxes/pods?labelSelector=execd.io%2Fsandbox%3D" + expires);
    if (left["items"].empty()) break;
    std::this_thread::sleep_for(200ms);
  }
  CHECK_MESSAGE(left["items"].empty(), "the expired sandbox's pod is still there");
  CHECK(c->Delete("/v1/sandboxes/" + keeps, auth())->status == 204);
}
