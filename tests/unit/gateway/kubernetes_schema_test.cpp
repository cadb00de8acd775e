// Every object the Kubernetes backend would send, and every manifest under deploy/k8s,
// checked against Kubernetes' own OpenAPI definitions: tests/k8s/validate_objects.mjs
// runs kubernetes-models' validators (types, formats, required fields, enums) plus a
// strict walk refusing fields the definitions do not name. node and kubernetes-models
// (installed by `make k8s-schema`) must be there: the test fails otherwise.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "gateway/backends/kubernetes_backend.hpp"
#include "gateway/backends/kubernetes_config.hpp"
#include "kubernetes_test_paths.hpp"
#include "support/temp_dir.hpp"

using namespace execd;
using namespace execd::gateway;
using nlohmann::json;

namespace {

const std::string kRoot = K8S_SOURCE_ROOT;

struct Outcome {
  int status = -1;
  std::string output;
};

Outcome run_capture(const std::string& cmd) {
  Outcome o;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) o.output.append(buf, n);
  const int rc = ::pclose(p);
  o.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  return o;
}

/// Each object's result line from the validator, by "Kind/name".
std::map<std::string, json> validate(const json& objects, int expect_status) {
  REQUIRE_MESSAGE(std::filesystem::exists(kRoot + "/.k8s-schema/node_modules/kubernetes-models"),
                  "kubernetes-models is not installed: run make k8s-schema");
  test::TempDir dir;
  const auto file = dir.write("objects.json", objects.dump());
  const Outcome o =
      run_capture("node " + kRoot + "/tests/k8s/validate_objects.mjs " + kRoot + "/.k8s-schema < " + file.string());
  CHECK_MESSAGE(o.status == expect_status, o.output);
  std::map<std::string, json> out;
  std::istringstream lines(o.output);
  for (std::string line; std::getline(lines, line);) {
    const json r = json::parse(line, nullptr, false);
    REQUIRE_MESSAGE(r.is_object(), "validator said: " << line);
    out[r["name"].get<std::string>()] = r;
  }
  REQUIRE(out.size() == objects.size());
  return out;
}

/// The pod template deploy/k8s ships, as the gateway reads it from its ConfigMap.
json shipped_template() {
  std::ifstream in(kRoot + "/deploy/k8s/sandbox-pod-template.yaml");
  std::stringstream text;
  text << in.rdbuf();
  auto cm = parse_yaml_document(text.str());
  REQUIRE(cm);
  auto pod = parse_yaml_document((*cm)["data"]["pod-template.json"].get<std::string>());
  REQUIRE(pod);
  return *pod;
}

}  // namespace

TEST_CASE("kubernetes schema: the pods and Secrets the backend sends are valid Kubernetes objects") {
  const auto created = std::chrono::system_clock::now();
  std::vector<std::pair<KubePodOptions, SandboxSpec>> cases;
  {
    KubePodOptions o;  // defaults: no limits, no entrypoint, non-root, no runtime class
    SandboxSpec s;
    s.image = "busybox:1.36";
    cases.emplace_back(o, s);
  }
  {
    KubePodOptions o;
    o.namespace_name = "execd-sandboxes";
    o.runtime_class = "gvisor";
    o.bundle_image = "registry.example/execd-bundle:0.1.0";
    SandboxSpec s;
    s.image = "python:3.12-slim";
    s.entrypoint = {"python3", "-m", "http.server", "8000"};
    s.timeout = std::chrono::seconds(3600);
    s.limits.cpu_millis = 1500;
    s.limits.memory_bytes = 3ull << 30;
    s.limits.disk_bytes = 10ull << 30;
    s.env = {{"API_URL", "https://example.com"}, {"my.dotted-name", "x"}, {"EMPTY", ""}};
    s.metadata = {{"user", "u-1"}, {"note", "quotes \" and\nnewlines"}};
    cases.emplace_back(o, s);
  }
  {
    KubePodOptions o;
    o.run_as_user = 0;  // root opt-in
    o.read_only_root = false;
    o.execd_port = 9000;
    SandboxSpec s;
    s.image = "ubuntu@sha256:0000000000000000000000000000000000000000000000000000000000000000";
    s.limits.cpu_millis = 1;
    s.limits.memory_bytes = 1;
    cases.emplace_back(o, s);
  }
  json objects = json::array();
  int i = 0;
  for (const auto& [o, s] : cases) {
    const std::string id = "case" + std::to_string(i++) + "-ABC_def";
    json pod =
        make_sandbox_pod(o, id, s, created, s.timeout ? std::optional<TimePoint>(created + *s.timeout) : std::nullopt);
    if (i == 2) apply_pod_template(pod, shipped_template());
    objects.push_back(pod);
    objects.push_back(make_token_secret(o, id, "0123456789abcdef"));
  }
  const auto results = validate(objects, 0);
  for (const auto& [name, r] : results) CHECK_MESSAGE(r["ok"] == true, name << ": " << r["errors"].dump());
  // The template's placement fields made it into the second pod.
  CHECK(objects[2]["spec"]["tolerations"][0]["key"] == "execd.io/sandboxes");
  CHECK(objects[2]["metadata"]["labels"]["execd.io/gateway"] == "default");
  CHECK(objects[2]["metadata"]["labels"]["app.kubernetes.io/part-of"] == "execd");
}

TEST_CASE("kubernetes schema: the check refuses what the API server would (so it can fail)") {
  KubePodOptions o;
  SandboxSpec s;
  s.image = "busybox";
  json bad_quantity = make_sandbox_pod(o, "a", s, std::chrono::system_clock::now(), std::nullopt);
  bad_quantity["metadata"]["name"] = "bad-quantity";
  bad_quantity["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "half a core";
  json unknown_field = make_sandbox_pod(o, "b", s, std::chrono::system_clock::now(), std::nullopt);
  unknown_field["metadata"]["name"] = "unknown-field";
  unknown_field["spec"]["containers"][0]["securityContext"]["readOnlyRootFS"] = true;
  json bad_enum = make_sandbox_pod(o, "c", s, std::chrono::system_clock::now(), std::nullopt);
  bad_enum["metadata"]["name"] = "bad-enum";
  bad_enum["spec"]["restartPolicy"] = "Sometimes";
  const auto results = validate(json::array({bad_quantity, unknown_field, bad_enum}), 1);
  CHECK(results.at("Pod/bad-quantity")["ok"] == false);
  CHECK(results.at("Pod/bad-quantity")["errors"].dump().find("quantity") != std::string::npos);
  CHECK(results.at("Pod/unknown-field")["errors"].dump().find("readOnlyRootFS: unknown field") != std::string::npos);
  CHECK(results.at("Pod/bad-enum")["ok"] == false);
}

TEST_CASE("kubernetes schema: every manifest under deploy/k8s, and kustomization lists them all") {
  const std::string dir = kRoot + "/deploy/k8s";
  std::set<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const auto name = e.path().filename().string();
    if (e.path().extension() == ".yaml" && name != "kustomization.yaml") files.insert(name);
  }
  REQUIRE(files.size() >= 8);
  // python3-yaml reads every document of every file (kubectl is not a Debian package).
  const Outcome o = run_capture(
      "python3 -c 'import sys, yaml, json; out = [d for f in sys.argv[1:] for d in "
      "yaml.safe_load_all(open(f)) if d]; json.dump(out, sys.stdout)' " +
      [&] {
        std::string args;
        for (const auto& f : files) args += " " + dir + "/" + f;
        return args;
      }());
  REQUIRE_MESSAGE(o.status == 0, o.output);
  const json objects = json::parse(o.output);
  const auto results = validate(objects, 0);
  std::set<std::string> kinds;
  for (const auto& [name, r] : results) {
    CHECK_MESSAGE(r["ok"] == true, name << ": " << r["errors"].dump());
    kinds.insert(name.substr(0, name.find('/')));
  }
  for (const char* k : {"Namespace", "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding",
                        "ConfigMap", "Deployment", "Service", "NetworkPolicy", "Ingress", "RuntimeClass"}) {
    CHECK_MESSAGE(kinds.count(k) == 1, "deploy/k8s has no " << k);
  }
  for (const auto& obj : objects) {
    if (obj["kind"] == "Deployment") CHECK(obj["spec"]["replicas"] == 2);
    if (obj["kind"] == "Ingress" && obj["metadata"]["name"] == "execd-gateway-sandbox") {
      CHECK(obj["metadata"]["annotations"]["nginx.ingress.kubernetes.io/upstream-hash-by"] == "$sandbox_id");
    }
  }
  std::ifstream in(dir + "/kustomization.yaml");
  std::stringstream text;
  text << in.rdbuf();
  auto k = parse_yaml_document(text.str());
  REQUIRE(k);
  std::set<std::string> listed;
  for (const auto& r : (*k)["resources"]) listed.insert(r.get<std::string>());
  CHECK(listed == files);
}
