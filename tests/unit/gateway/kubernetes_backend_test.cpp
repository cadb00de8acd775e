// The Kubernetes backend end to end against an API-server STAND-IN (tests/k8s/
// apiserver_standin.py): not Kubernetes, but a small HTTPS server speaking the API
// reference's paths and shapes, validating every object it receives with Kubernetes'
// own schemas (kubernetes-models), and starting a real execd on a loopback address as
// the "pod". What runs for real here: the backend's code, its TLS client and bearer
// token, the Secret -> env -> execd token path, the watch until Ready, /ping and a
// command through the pod IP. What does not: a kubelet, a scheduler, an image pull.

#include "gateway/backends/kubernetes_backend.hpp"

#include <doctest/doctest.h>

#include <chrono>

#include "core/id.hpp"
#include "http/client.hpp"
#include "k8s/api_standin.hpp"
#include "kubernetes_test_paths.hpp"
#include "support/temp_dir.hpp"

using namespace execd;
using namespace execd::gateway;
using nlohmann::json;

namespace {

/// The stand-in with this build's execd as its pods.
class StandIn : public test::ApiStandIn {
 public:
  explicit StandIn(std::vector<std::string> extra = {})
      : ApiStandIn(K8S_SOURCE_ROOT, K8S_EXECD_BIN, std::move(extra)) {}
};

KubernetesBackendConfig config_for(const std::string& kubeconfig) {
  auto api = load_kubeconfig(kubeconfig);
  REQUIRE_MESSAGE(api, (api ? "" : api.error().message));
  KubernetesBackendConfig c;
  c.api = *api;
  c.pod.gateway_instance = "gw-test";
  c.ready_timeout = std::chrono::seconds(30);
  return c;
}

std::shared_ptr<KubernetesBackend> open_backend(const KubernetesBackendConfig& c) {
  auto b = KubernetesBackend::open(c);
  REQUIRE_MESSAGE(b, (b ? "" : b.error().message));
  return *b;
}

http::ClientResponse execd_call(const Placement& p, const std::string& token, const std::string& method,
                                const std::string& target, const std::string& body = "") {
  http::ClientRequest req;
  req.method = method;
  req.target = target;
  req.body = body;
  req.timeout = std::chrono::seconds(20);
  req.headers = {{"X-EXECD-ACCESS-TOKEN", token}};
  auto res = http::send_request(http::ClientEndpoint{p.host, p.port, ""}, req);
  REQUIRE_MESSAGE(res, (res ? "" : res.error().message));
  return *res;
}

}  // namespace

TEST_CASE(
    "kubernetes backend (API stand-in): create, watch to Ready, execd through the pod IP, list, rebuild, delete") {
  StandIn api;
  auto backend = open_backend(config_for(api.kubeconfig(api.token())));
  SandboxSpec spec;
  spec.image = "debian:bookworm-slim";
  spec.timeout = std::chrono::seconds(600);
  spec.limits.cpu_millis = 500;
  spec.limits.memory_bytes = 256ull << 20;
  spec.env = {{"GREETING", "hello"}};
  spec.metadata = {{"project", "demo"}};
  REQUIRE(backend->validate(spec));
  REQUIRE(backend->has_room(spec));

  const std::string id = core::new_id();
  const std::string token = core::random_hex(32);
  const auto started = std::chrono::steady_clock::now();
  auto placed = backend->create(id, spec, token);
  REQUIRE_MESSAGE(placed, (placed ? "" : placed.error().message));
  MESSAGE("create -> Ready in "
          << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count()
          << " ms");
  CHECK(placed->handle == pod_name_for(id));
  CHECK(placed->host.rfind("127.", 0) == 0);
  CHECK(placed->port == 44772);

  // The token went Secret -> environment -> execd: /ping wants it, and refuses another.
  CHECK(execd_call(*placed, token, "GET", "/ping").status == 200);
  CHECK(execd_call(*placed, "wrong", "GET", "/ping").status == 401);
  const auto command = execd_call(*placed, token, "POST", "/command", R"({"command":"echo from-the-pod"})");
  CHECK(command.status == 200);
  CHECK(command.body.find("from-the-pod") != std::string::npos);

  auto status = backend->inspect(*placed);
  REQUIRE(status);
  CHECK(status->phase == InstanceStatus::Phase::running);
  auto listed = backend->list();
  REQUIRE(listed);
  REQUIRE(listed->size() == 1);
  CHECK((*listed)[0].sandbox_id == id);
  CHECK((*listed)[0].placement.host == placed->host);

  // A gateway that lost its table rebuilds the row, token included, from the pod and Secret.
  auto records = backend->records();
  REQUIRE_MESSAGE(records, (records ? "" : records.error().message));
  REQUIRE(records->size() == 1);
  const Sandbox& row = (*records)[0].sandbox;
  CHECK(row.id == id);
  CHECK(row.access_token == token);
  CHECK(row.spec.metadata == spec.metadata);
  CHECK(row.spec.limits.memory_bytes == spec.limits.memory_bytes);
  CHECK(row.expires_at.has_value());
  CHECK(row.state == SandboxState::running);

  auto paused = backend->pause(*placed);
  REQUIRE_FALSE(paused);
  CHECK(paused.error().code == core::Errc::not_supported);
  CHECK(backend->resume(*placed).error().code == core::Errc::not_supported);

  // The pod and its Secret live in the kubeconfig context's namespace; the Secret is owned by the pod.
  const std::string secret_path = "/api/v1/namespaces/sandboxes/secrets/" + secret_name_for(placed->handle);
  REQUIRE(backend->api().call("GET", "/api/v1/namespaces/sandboxes/pods/" + placed->handle, nullptr, "pod"));
  auto owned = backend->api().call("GET", secret_path, nullptr, "secret");
  REQUIRE(owned);
  CHECK((*owned)["metadata"]["ownerReferences"][0]["name"] == placed->handle);

  REQUIRE(backend->remove(*placed));
  CHECK(backend->remove(*placed));  // idempotent
  auto gone = backend->inspect(*placed);
  REQUIRE(gone);
  CHECK(gone->phase == InstanceStatus::Phase::gone);
  auto secret = backend->api().call("GET", secret_path, nullptr, "secret");
  REQUIRE_FALSE(secret);
  CHECK(secret.error().code == core::Errc::not_found);
  // execd is gone with its pod.
  http::ClientRequest ping;
  ping.target = "/ping";
  ping.timeout = std::chrono::seconds(3);
  CHECK_FALSE(http::send_request(http::ClientEndpoint{placed->host, placed->port, ""}, ping));

  const json stats = api.stats();
  CHECK(stats["validated"].get<int>() >= 3);  // the Secret, its patch, the Pod
  CHECK_MESSAGE(stats["invalid"].empty(), stats["invalid"].dump());
}

TEST_CASE("kubernetes backend (API stand-in): a pod that cannot start fails with the reason and leaves nothing") {
  StandIn api;
  auto backend = open_backend(config_for(api.kubeconfig(api.token())));
  SandboxSpec spec;
  spec.image = "missing:image";
  auto placed = backend->create(core::new_id(), spec, core::random_hex(32));
  REQUIRE_FALSE(placed);
  CHECK(placed.error().message.find("ErrImagePull") != std::string::npos);
  auto listed = backend->list();
  REQUIRE(listed);
  CHECK(listed->empty());
  CHECK(api.stats()["invalid"].empty());
}

TEST_CASE("kubernetes backend (API stand-in): the watermark from the cluster's nodes, pods and metrics") {
  SUBCASE("requests only") {
    StandIn api({"--node-cpu", "2", "--node-memory", "4Gi"});
    auto c = config_for(api.kubeconfig(api.token()));
    auto backend = open_backend(c);
    SandboxSpec small;
    small.image = "busybox";
    small.limits.cpu_millis = 500;
    small.limits.memory_bytes = 256ull << 20;
    CHECK(backend->has_room(small));
    SandboxSpec big = small;
    big.limits.cpu_millis = 3500;  // 3.5 of 4 cores: past 80%
    auto no = backend->has_room(big);
    REQUIRE_FALSE(no);
    CHECK(no.error().code == core::Errc::unavailable);
    CHECK(no.error().message.rfind("cpu:", 0) == 0);
    // Each sandbox placed counts against the next.
    c.thresholds.memory_pct = 10;  // 819 MiB of 8 GiB
    auto tight = open_backend(c);
    std::vector<Placement> placed;
    for (int i = 0; i < 3; ++i) {
      if (!tight->has_room(small)) break;
      auto p = tight->create(core::new_id(), small, core::random_hex(32));
      REQUIRE_MESSAGE(p, (p ? "" : p.error().message));
      placed.push_back(*p);
    }
    CHECK(placed.size() == 3);  // 3 x 256 MiB = 768 MiB fits under 819 MiB
    auto full = tight->has_room(small);
    REQUIRE_FALSE(full);
    CHECK(full.error().message.rfind("memory:", 0) == 0);
    for (const auto& p : placed) CHECK(tight->remove(p));
  }
  SUBCASE("metrics.k8s.io usage above requests counts") {
    StandIn api({"--metrics", "--metrics-cpu", "1900000000n"});  // 1.9 of 4 cores used on each node
    auto backend = open_backend(config_for(api.kubeconfig(api.token())));
    SandboxSpec spec;
    spec.image = "busybox";
    spec.limits.cpu_millis = 1000;
    CHECK(backend->has_room(spec));  // 3.8 + 1 of 8 cores = 60%: room
    spec.limits.cpu_millis = 2900;   // 3.8 + 2.9 of 8 = 84%: none
    auto full = backend->has_room(spec);
    REQUIRE_FALSE(full);
    CHECK(full.error().message.find("cpu: 6700m of 8000m") != std::string::npos);
  }
}

TEST_CASE("kubernetes backend (API stand-in): a wrong token or an untrusted server is refused at open") {
  StandIn api;
  auto wrong_token = KubernetesBackend::open(config_for(api.kubeconfig("not-the-token")));
  REQUIRE_FALSE(wrong_token);
  CHECK(wrong_token.error().code == core::Errc::permission_denied);
  auto wrong_ca = KubernetesBackend::open(config_for(api.kubeconfig(api.token(), api.other_ca())));
  REQUIRE_FALSE(wrong_ca);
  CHECK(wrong_ca.error().message.find("certificate verify failed") != std::string::npos);
}

TEST_CASE("kubernetes backend (API stand-in): instance labels for replicas: stored, found, relabelled") {
  StandIn api;
  auto backend = open_backend(config_for(api.kubeconfig(api.token())));
  SandboxSpec spec;
  spec.image = "busybox";
  spec.metadata = {{"team", "a"}};
  InstanceLabels labels;
  labels.owner_replica = "gw-0";
  labels.owner_url = "http://10.0.0.5:8080";
  labels.access_token = core::random_hex(32);
  labels.spec = spec;
  labels.created_at = std::chrono::system_clock::from_time_t(1800000000);
  labels.expires_at = labels.created_at + std::chrono::seconds(600);
  const std::string id = core::new_id();
  auto placed = backend->create_labelled(id, spec, labels);
  REQUIRE_MESSAGE(placed, (placed ? "" : placed.error().message));

  auto found = backend->find(id);
  REQUIRE(found);
  REQUIRE(found->has_value());
  REQUIRE((*found)->labels.has_value());
  const InstanceLabels& got = *(*found)->labels;
  CHECK(got.owner_replica == "gw-0");
  CHECK(got.owner_url == "http://10.0.0.5:8080");
  CHECK(got.access_token == labels.access_token);
  CHECK(got.spec.metadata == spec.metadata);
  CHECK(got.created_at == labels.created_at);
  CHECK(got.expires_at == labels.expires_at);
  CHECK((*found)->status.phase == InstanceStatus::Phase::running);

  // Another replica adopts it, renews it to no expiry and patches its metadata.
  InstanceLabels adopted = got;
  adopted.owner_replica = "gw-1";
  adopted.owner_url = "http://10.0.0.6:8080";
  adopted.expires_at.reset();
  adopted.spec.metadata["team"] = "b";
  REQUIRE(backend->relabel(*placed, adopted));
  auto listed = backend->list();
  REQUIRE(listed);
  REQUIRE(listed->size() == 1);
  REQUIRE((*listed)[0].labels.has_value());
  CHECK((*listed)[0].labels->owner_replica == "gw-1");
  CHECK_FALSE((*listed)[0].labels->expires_at.has_value());
  CHECK((*listed)[0].labels->spec.metadata.at("team") == "b");
  CHECK((*listed)[0].labels->access_token == labels.access_token);

  auto none = backend->find(core::new_id());
  REQUIRE(none);
  CHECK_FALSE(none->has_value());
  CHECK(backend->remove(*placed));
  CHECK_MESSAGE(api.stats()["invalid"].empty(), api.stats()["invalid"].dump());
}
