// The pod and Secret objects the Kubernetes backend sends, and what it reads back from
// pods the API returns (pure functions; the objects' schemas are checked against
// Kubernetes' own in kubernetes_schema_test.cpp).
#include "gateway/backends/kubernetes_pod.hpp"

#include <doctest/doctest.h>

#include <regex>
#include <set>

using namespace execd;
using namespace execd::gateway;
using nlohmann::json;

namespace {

bool is_dns1035(const std::string& s) {
  static const std::regex re("[a-z]([-a-z0-9]*[a-z0-9])?");
  return s.size() <= 63 && std::regex_match(s, re);
}

SandboxSpec full_spec() {
  SandboxSpec s;
  s.image = "python:3.12-slim";
  s.entrypoint = {"python3", "-m", "http.server"};
  s.timeout = std::chrono::seconds(600);
  s.limits.cpu_millis = 500;
  s.limits.memory_bytes = 512ull << 20;
  s.limits.disk_bytes = 1ull << 30;
  s.env = {{"A", "1"}, {"PATH_EXTRA", "/x"}};
  s.metadata = {{"project", "demo"}};
  return s;
}

const json* container(const json& pod, const char* list, const std::string& name) {
  for (const auto& c : pod["spec"][list]) {
    if (c["name"] == name) return &c;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("kubernetes pod: names are DNS-1035 labels, distinct for distinct ids") {
  CHECK(pod_name_for("bfdf0123456789abcdef0123456789ab") == "sbx-bfdf0123456789abcdef0123456789ab");
  std::set<std::string> names;
  for (const std::string& id : std::vector<std::string>{"ABC", "abc", "a_b", "a.b", "a-b", std::string(100, 'x'),
                                                        std::string(100, 'x') + "y", "-", "Z-"}) {
    const std::string n = pod_name_for(id);
    CHECK_MESSAGE(is_dns1035(n), n);
    CHECK(n.size() <= 57);  // room for the Secret's "-token"
    CHECK(secret_name_for(n).size() <= 63);
    names.insert(n);
  }
  CHECK(names.size() == 9);
  CHECK(label_value_for("abc-123") == "abc-123");
  CHECK(label_value_for("-bad") != "-bad");
  CHECK(label_value_for(std::string(70, 'a')).size() <= 63);
}

TEST_CASE("kubernetes pod: the object for a full spec") {
  KubePodOptions o;
  o.namespace_name = "sandboxes";
  o.gateway_instance = "gw-1";
  o.bundle_image = "registry.local/execd-bundle:1";
  o.runtime_class = "gvisor";
  const auto created = std::chrono::system_clock::from_time_t(1800000000);
  const json pod = make_sandbox_pod(o, "abc123", full_spec(), created, created + std::chrono::seconds(600));
  CHECK(pod["apiVersion"] == "v1");
  CHECK(pod["kind"] == "Pod");
  CHECK(pod["metadata"]["name"] == "sbx-abc123");
  CHECK(pod["metadata"]["namespace"] == "sandboxes");
  CHECK(pod["metadata"]["labels"]["execd.io/sandbox"] == "abc123");
  CHECK(pod["metadata"]["labels"]["execd.io/gateway"] == "gw-1");
  CHECK(pod["metadata"]["annotations"]["execd.io/expires-at"] == "2027-01-15T08:10:00Z");
  CHECK(pod["metadata"]["annotations"]["execd.io/token-secret"] == "sbx-abc123-token");
  const json& spec = pod["spec"];
  CHECK(spec["automountServiceAccountToken"] == false);
  CHECK(spec["enableServiceLinks"] == false);
  CHECK(spec["restartPolicy"] == "Never");
  CHECK(spec["runtimeClassName"] == "gvisor");
  CHECK(spec["securityContext"]["runAsNonRoot"] == true);
  CHECK(spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault");
  const json* init = container(pod, "initContainers", "execd-bundle");
  REQUIRE(init != nullptr);
  CHECK((*init)["image"] == "registry.local/execd-bundle:1");
  const json* main = container(pod, "containers", "sandbox");
  REQUIRE(main != nullptr);
  CHECK((*main)["image"] == "python:3.12-slim");
  CHECK((*main)["resources"]["requests"]["cpu"] == "500m");
  CHECK((*main)["resources"]["limits"]["cpu"] == "500m");
  CHECK((*main)["resources"]["limits"]["memory"] == std::to_string(512ull << 20));
  CHECK((*main)["resources"]["limits"]["ephemeral-storage"] == std::to_string(1ull << 30));
  CHECK((*main)["securityContext"]["allowPrivilegeEscalation"] == false);
  CHECK((*main)["securityContext"]["readOnlyRootFilesystem"] == true);
  CHECK((*main)["securityContext"]["capabilities"]["drop"][0] == "ALL");
  CHECK((*main)["readinessProbe"]["tcpSocket"]["port"] == 44772);
  // execd beside the entrypoint: the wrapper, then the entrypoint's own argv.
  const json& cmd = (*main)["command"];
  CHECK(cmd[0] == "/opt/execd/busybox");
  CHECK(cmd[3].get<std::string>().find("unset EXECD_SANDBOX_TOKEN") != std::string::npos);
  CHECK(cmd[5] == "python3");
  CHECK(cmd[7] == "http.server");
  // The token itself is never in the pod: only a reference to the Secret.
  const json& env = (*main)["env"];
  CHECK(env[0]["name"] == "EXECD_SANDBOX_TOKEN");
  CHECK(env[0]["valueFrom"]["secretKeyRef"]["name"] == "sbx-abc123-token");
  CHECK(pod.dump().find("s3cret") == std::string::npos);
  const json secret = make_token_secret(o, "abc123", "s3cret");
  CHECK(secret["kind"] == "Secret");
  CHECK(secret["metadata"]["name"] == "sbx-abc123-token");
  CHECK(secret["stringData"]["token"] == "s3cret");
}

TEST_CASE("kubernetes pod: defaults without limits, no runtime class, root opt-in") {
  KubePodOptions o;
  o.run_as_user = 0;
  SandboxSpec s;
  s.image = "busybox";
  const json pod = make_sandbox_pod(o, "x", s, std::chrono::system_clock::now(), std::nullopt);
  CHECK_FALSE(pod["spec"].contains("runtimeClassName"));
  CHECK_FALSE(pod["spec"]["securityContext"].contains("runAsNonRoot"));
  CHECK_FALSE(pod["metadata"]["annotations"].contains("execd.io/expires-at"));
  const json* main = container(pod, "containers", "sandbox");
  REQUIRE(main != nullptr);
  CHECK((*main)["resources"]["requests"]["cpu"] == "250m");
  CHECK_FALSE((*main)["resources"].contains("limits"));
  CHECK((*main)["command"].size() == 5);  // execd alone
}

TEST_CASE("kubernetes pod: specs a pod cannot express are refused by field") {
  SandboxSpec s;
  s.image = "busybox";
  CHECK(check_pod_spec(s));
  s.limits.max_pids = 64;
  auto pids = check_pod_spec(s);
  REQUIRE_FALSE(pids);
  CHECK(pids.error().message.find("resourceLimits.pids") != std::string::npos);
  s.limits.max_pids = 0;
  s.env = {{"1BAD", "x"}};
  auto env = check_pod_spec(s);
  REQUIRE_FALSE(env);
  CHECK(env.error().message.find("1BAD") != std::string::npos);
  s.env = {{"EXECD_SANDBOX_TOKEN", "x"}};
  CHECK_FALSE(check_pod_spec(s));
}

TEST_CASE("kubernetes pod: what the backend reads from pods the API returns") {
  json pod = {{"metadata", {{"name", "sbx-a"}, {"uid", "u-1"}, {"annotations", {{"execd.io/sandbox-id", "a"}}}}},
              {"status",
               {{"phase", "Pending"},
                {"conditions",
                 {{{"type", "PodScheduled"},
                   {"status", "False"},
                   {"reason", "Unschedulable"},
                   {"message", "0/3 nodes are available: 3 Insufficient cpu."}}}}}}};
  PodView v = view_pod(pod);
  CHECK(v.sandbox_id == "a");
  CHECK(v.uid == "u-1");
  CHECK(v.phase == InstanceStatus::Phase::starting);
  CHECK_FALSE(v.is_stuck);
  CHECK(v.message.find("Insufficient cpu") != std::string::npos);

  pod["status"] = {
      {"phase", "Pending"},
      {"containerStatuses",
       {{{"name", "sandbox"}, {"state", {{"waiting", {{"reason", "ErrImagePull"}, {"message", "not found"}}}}}}}}};
  v = view_pod(pod);
  CHECK(v.is_stuck);
  CHECK(v.message.find("ErrImagePull") != std::string::npos);

  pod["status"] = {
      {"phase", "Running"}, {"podIP", "10.1.2.3"}, {"conditions", {{{"type", "Ready"}, {"status", "True"}}}}};
  v = view_pod(pod);
  CHECK(v.phase == InstanceStatus::Phase::running);
  CHECK(v.is_ready);
  CHECK(v.ip == "10.1.2.3");

  pod["status"] = {
      {"phase", "Failed"},
      {"containerStatuses",
       {{{"name", "sandbox"}, {"state", {{"terminated", {{"reason", "OOMKilled"}, {"exitCode", 137}}}}}}}}};
  v = view_pod(pod);
  CHECK(v.phase == InstanceStatus::Phase::exited);
  CHECK(v.message == "OOMKilled, exit code 137");

  pod["status"] = {{"phase", "Failed"}, {"reason", "Evicted"}, {"message", "low on ephemeral-storage"}};
  CHECK(view_pod(pod).message == "Evicted: low on ephemeral-storage");

  pod["metadata"]["deletionTimestamp"] = "2026-11-30T10:00:00Z";
  CHECK(view_pod(pod).is_deleting);
}

TEST_CASE("kubernetes pod: a restarted gateway rebuilds the row from the annotations") {
  KubePodOptions o;
  const auto created = std::chrono::system_clock::from_time_t(1800000000);
  json pod = make_sandbox_pod(o, "abc123", full_spec(), created, created + std::chrono::seconds(600));
  pod["status"] = {
      {"phase", "Running"}, {"podIP", "10.1.2.3"}, {"conditions", {{{"type", "Ready"}, {"status", "True"}}}}};
  auto r = record_from_pod(pod, 44772);
  REQUIRE_MESSAGE(r, (r ? "" : r.error().message));
  const Sandbox& s = r->sandbox;
  CHECK(s.id == "abc123");
  CHECK(s.backend == "kubernetes");
  CHECK(r->token_secret == "sbx-abc123-token");
  CHECK(s.spec.image == "python:3.12-slim");
  CHECK(s.spec.entrypoint == full_spec().entrypoint);
  CHECK(s.spec.env == full_spec().env);
  CHECK(s.spec.metadata == full_spec().metadata);
  CHECK(s.spec.limits.cpu_millis == 500);
  CHECK(s.spec.limits.memory_bytes == 512ull << 20);
  CHECK(s.spec.timeout == std::chrono::seconds(600));
  CHECK(s.created_at == created);
  REQUIRE(s.expires_at);
  CHECK(*s.expires_at == created + std::chrono::seconds(600));
  CHECK(s.placement.host == "10.1.2.3");
  CHECK(s.placement.handle == "sbx-abc123");
  CHECK(s.state == SandboxState::running);
  pod["metadata"]["annotations"].erase("execd.io/sandbox-id");
  CHECK_FALSE(record_from_pod(pod, 44772));
}

TEST_CASE("kubernetes pod: metav1.Time") {
  const auto t = std::chrono::system_clock::from_time_t(1800000000);
  CHECK(format_kube_time(t) == "2027-01-15T08:00:00Z");
  CHECK(parse_kube_time("2027-01-15T08:00:00Z") == t);
  CHECK(parse_kube_time("2027-01-15T08:00:00.123456Z") == t);
  CHECK_FALSE(parse_kube_time("2027-01-15T08:00:00"));
  CHECK_FALSE(parse_kube_time("2027-01-15 08:00:00Z"));
  CHECK_FALSE(parse_kube_time("2027-01-15T08:00:00.Z"));
}
