#include "gateway/backends/kubernetes_backend.hpp"

#include <spdlog/spdlog.h>

#include <fstream>
#include <sstream>

#include "core/bytes.hpp"

namespace execd::gateway {
namespace {

using core::Errc;
using core::make_error;
using nlohmann::json;
using Steady = std::chrono::steady_clock;
namespace keys = kube_keys;

constexpr const char* kMergePatch = "application/merge-patch+json";

InstanceStatus status_of(const PodView& v) {
  InstanceStatus s;
  s.phase = v.is_deleting ? InstanceStatus::Phase::exited : v.phase;
  s.message = v.is_deleting && v.message.empty() ? "the pod is being deleted" : v.message;
  return s;
}

std::string selector_for(const KubePodOptions& o) {
  return core::percent_encode(std::string(keys::kGatewayLabel) + "=" + o.gateway_instance);
}

}  // namespace

void apply_pod_template(json& pod, const json& pod_template) {
  if (!pod_template.is_object()) return;
  const json tmeta = pod_template.value("metadata", json::object());
  for (const char* field : {"labels", "annotations"}) {
    if (!tmeta.contains(field) || !tmeta[field].is_object()) continue;
    json merged = tmeta[field];
    for (const auto& [k, v] : pod["metadata"][field].items()) merged[k] = v;  // ours win
    pod["metadata"][field] = merged;
  }
  const json tspec = pod_template.value("spec", json::object());
  for (const char* field : {"nodeSelector", "tolerations", "affinity", "priorityClassName", "imagePullSecrets",
                            "dnsPolicy", "dnsConfig", "topologySpreadConstraints"}) {
    if (tspec.contains(field) && !tspec[field].is_null()) pod["spec"][field] = tspec[field];
  }
}

core::Result<std::shared_ptr<KubernetesBackend>> KubernetesBackend::open(KubernetesBackendConfig config) {
  if (config.pod.namespace_name.empty()) config.pod.namespace_name = config.api.namespace_name;
  if (config.pod.gateway_instance.empty())
    return make_error(Errc::invalid_argument, "kubernetes backend: empty instance name");
  if (config.pod.bundle_image.empty())
    return make_error(Errc::invalid_argument, "kubernetes backend: --k8s-bundle-image is empty");
  for (const double pct : {config.thresholds.cpu_pct, config.thresholds.memory_pct, config.thresholds.pods_pct}) {
    if (!(pct > 0 && pct <= 100))
      return make_error(Errc::invalid_argument, "kubernetes backend: watermarks are percentages in (0, 100]");
  }
  json pod_template;
  if (!config.pod_template_path.empty()) {
    std::ifstream in(config.pod_template_path);
    if (!in)
      return make_error(Errc::invalid_argument,
                        "kubernetes backend: cannot read the pod template " + config.pod_template_path);
    std::ostringstream text;
    text << in.rdbuf();
    auto parsed = parse_yaml_document(text.str());
    if (!parsed)
      return make_error(Errc::invalid_argument,
                        "pod template " + config.pod_template_path + ": " + parsed.error().message);
    if (!parsed->is_object() || parsed->value("kind", "") != "Pod") {
      return make_error(Errc::invalid_argument, "pod template " + config.pod_template_path + ": not a Pod object");
    }
    pod_template = std::move(*parsed);
  }
  auto api = KubernetesApi::open(config.api, config.api_timeout);
  if (!api) return api.error();
  auto backend = std::make_shared<KubernetesBackend>(std::move(config), std::move(*api), std::move(pod_template));
  auto probe = backend->api_.call("GET", backend->pods_path() + "?limit=1", nullptr,
                                  "listing pods in namespace " + backend->config_.pod.namespace_name);
  if (!probe) return probe.error();
  spdlog::info("kubernetes backend: {} at {}:{}, namespace {}, instance {}", backend->config_.api.source,
               backend->config_.api.host, backend->config_.api.port, backend->config_.pod.namespace_name,
               backend->config_.pod.gateway_instance);
  return backend;
}

std::string KubernetesBackend::pods_path() const {
  return "/api/v1/namespaces/" + core::percent_encode(config_.pod.namespace_name) + "/pods";
}

std::string KubernetesBackend::secrets_path() const {
  return "/api/v1/namespaces/" + core::percent_encode(config_.pod.namespace_name) + "/secrets";
}

json KubernetesBackend::render_pod(const std::string& sandbox_id, const SandboxSpec& spec, TimePoint created_at,
                                   std::optional<TimePoint> expires_at) const {
  json pod = make_sandbox_pod(config_.pod, sandbox_id, spec, created_at, expires_at);
  apply_pod_template(pod, template_);
  return pod;
}

core::Result<void> KubernetesBackend::validate(const SandboxSpec& spec) const {
  return check_pod_spec(spec);
}

core::Result<void> KubernetesBackend::has_room(const SandboxSpec& spec) const {
  auto nodes = api_.call("GET", "/api/v1/nodes", nullptr, "listing nodes");
  if (!nodes) return nodes.error();
  // Pods of every namespace that may hold resources; the API filters out those that ended.
  auto pods = api_.call(
      "GET", "/api/v1/pods?fieldSelector=" + core::percent_encode("status.phase!=Succeeded,status.phase!=Failed"),
      nullptr, "listing pods");
  if (!pods) return pods.error();
  // metrics.k8s.io is an optional add-on (metrics-server): absent or forbidden means requests only.
  json metrics = nullptr;
  if (auto m = api_.call("GET", "/apis/metrics.k8s.io/v1beta1/nodes", nullptr, "node metrics"); m) {
    metrics = std::move(*m);
  } else if (m.error().code != Errc::not_found && m.error().code != Errc::permission_denied) {
    spdlog::warn("kubernetes backend: {}; weighing requests only", m.error().message);
  }
  const ClusterLoad load = compute_cluster_load(*nodes, *pods, metrics);
  const PodAsk ask = pod_requests(render_pod("room-check", spec, std::chrono::system_clock::now(), std::nullopt));
  auto room = check_room(load, ask, config_.thresholds);
  spdlog::info("kubernetes placement: {} ({}; watermarks cpu {}%, memory {}%, pods {}%)",
               room ? "room" : "no room: " + room.error().message, describe_load(load, ask), config_.thresholds.cpu_pct,
               config_.thresholds.memory_pct, config_.thresholds.pods_pct);
  return room;
}

core::Result<Placement> KubernetesBackend::create(const std::string& sandbox_id, const SandboxSpec& spec,
                                                  const std::string& access_token) {
  InstanceLabels labels;
  labels.access_token = access_token;
  labels.spec = spec;
  labels.created_at = std::chrono::system_clock::now();
  if (spec.timeout) labels.expires_at = labels.created_at + *spec.timeout;
  return create_labelled(sandbox_id, spec, labels);
}

core::Result<Placement> KubernetesBackend::create_labelled(const std::string& sandbox_id, const SandboxSpec& spec,
                                                           const InstanceLabels& labels) {
  if (auto v = check_pod_spec(spec); !v) return v.error();
  const auto deadline = Steady::now() + config_.ready_timeout;
  const std::string& access_token = labels.access_token;
  json pod = render_pod(sandbox_id, spec, labels.created_at, labels.expires_at);
  if (!labels.owner_replica.empty()) {
    pod["metadata"]["annotations"][keys::kOwnerReplicaAnnotation] = labels.owner_replica;
    pod["metadata"]["annotations"][keys::kOwnerUrlAnnotation] = labels.owner_url;
  }
  const std::string name = pod["metadata"]["name"].get<std::string>();
  // Whatever a crashed earlier attempt left under this name is this sandbox's own.
  if (auto r = remove_named(name); !r) return r.error();

  auto fail = [&](core::Error e) -> core::Result<Placement> {
    if (auto r = remove_named(name); !r)
      spdlog::warn("kubernetes backend: cleaning up {}: {}", name, r.error().message);
    return e;
  };
  auto secret = api_.call("POST", secrets_path(), make_token_secret(config_.pod, sandbox_id, access_token),
                          "creating secret " + secret_name_for(name));
  if (!secret) return fail(secret.error());
  auto created = api_.call("POST", pods_path(), pod, "creating pod " + name);
  if (!created) return fail(created.error());
  // The Secret is owned by the pod from now on: deleting the pod (by anyone) removes it.
  const PodView v = view_pod(*created);
  const json owner = {
      {"metadata",
       {{"ownerReferences",
         {{{"apiVersion", "v1"}, {"kind", "Pod"}, {"name", name}, {"uid", v.uid}, {"blockOwnerDeletion", false}}}}}}};
  if (auto r = api_.call("PATCH", secrets_path() + "/" + secret_name_for(name), owner,
                         "owning secret " + secret_name_for(name), kMergePatch);
      !r) {
    spdlog::warn("kubernetes backend: {} (the gateway still deletes it with the pod)", r.error().message);
  }
  auto placed = await_ready(name, *created, deadline);
  if (!placed) return fail(placed.error());
  return placed;
}

core::Result<Placement> KubernetesBackend::await_ready(const std::string& pod_name, json pod,
                                                       Steady::time_point deadline) const {
  auto verdict = [&](const json& object) -> std::optional<core::Result<Placement>> {
    const PodView v = view_pod(object);
    if (v.is_deleting)
      return core::Result<Placement>(make_error(Errc::unavailable, "pod " + pod_name + " is being deleted"));
    if (v.phase == InstanceStatus::Phase::exited)
      return core::Result<Placement>(make_error(Errc::unavailable, "pod " + pod_name + " ended: " + v.message));
    if (v.is_stuck)
      return core::Result<Placement>(make_error(Errc::unavailable, "pod " + pod_name + " cannot start: " + v.message));
    if (v.is_ready && !v.ip.empty()) return core::Result<Placement>(Placement{pod_name, v.ip, config_.pod.execd_port});
    return std::nullopt;
  };
  std::string last = "not Ready yet";
  for (;;) {
    if (auto done = verdict(pod)) return *done;
    const PodView v = view_pod(pod);
    if (!v.message.empty()) last = v.message;
    const auto left = std::chrono::duration_cast<std::chrono::seconds>(deadline - Steady::now()).count();
    if (left <= 0) {
      return make_error(
          Errc::unavailable,
          "pod " + pod_name + " not Ready within " +
              std::to_string(std::chrono::duration_cast<std::chrono::seconds>(config_.ready_timeout).count()) + " s (" +
              last + ")");
    }
    const std::string rv = pod.value("metadata", json::object()).value("resourceVersion", "");
    const std::string path = pods_path() +
                             "?watch=1&fieldSelector=" + core::percent_encode("metadata.name=" + pod_name) +
                             "&resourceVersion=" + core::percent_encode(rv) + "&timeoutSeconds=" + std::to_string(left);
    std::optional<core::Result<Placement>> outcome;
    auto streamed = api_.watch(
        path,
        [&](const WatchEvent& e) {
          if (e.type == "ERROR") return false;  // typically 410 Gone: the version is too old; read the pod afresh
          if (e.type == "DELETED") {
            outcome = core::Result<Placement>(
                make_error(Errc::unavailable, "pod " + pod_name + " was deleted while starting"));
            return false;
          }
          if (e.type == "BOOKMARK") return true;
          pod = e.object;
          outcome = verdict(pod);
          if (const PodView w = view_pod(pod); !w.message.empty()) last = w.message;
          return !outcome.has_value();
        },
        deadline + std::chrono::seconds(5));
    if (outcome) return *outcome;
    if (!streamed && Steady::now() >= deadline) continue;  // reported above with the last reason
    if (!streamed && streamed.error().code != Errc::unavailable) return streamed.error();
    if (!streamed)
      spdlog::debug("kubernetes backend: watch of {} broke off ({}); reading it again", pod_name,
                    streamed.error().message);
    // The stream ended (server timeout, a 410, a broken connection): the pod as it is now.
    auto fresh = api_.call("GET", pods_path() + "/" + pod_name, nullptr, "reading pod " + pod_name);
    if (!fresh) return fresh.error();
    pod = std::move(*fresh);
  }
}

core::Result<InstanceStatus> KubernetesBackend::inspect(const Placement& placement) {
  auto pod = api_.call("GET", pods_path() + "/" + core::percent_encode(placement.handle), nullptr,
                       "reading pod " + placement.handle);
  if (!pod) {
    if (pod.error().code == Errc::not_found) return InstanceStatus{InstanceStatus::Phase::gone, "the pod is gone"};
    return pod.error();
  }
  return status_of(view_pod(*pod));
}

core::Result<void> KubernetesBackend::pause(const Placement&) {
  return make_error(
      Errc::not_supported,
      "the kubernetes backend cannot pause: the pod API has no way to freeze a pod's processes (delete it, or "
      "keep it running)");
}

core::Result<void> KubernetesBackend::resume(const Placement&) {
  return make_error(Errc::not_supported, "the kubernetes backend cannot pause, so there is nothing to resume");
}

core::Result<void> KubernetesBackend::remove(const Placement& placement) {
  return remove_named(placement.handle);
}

core::Result<void> KubernetesBackend::remove_named(const std::string& pod_name) const {
  const json options = {
      {"apiVersion", "v1"}, {"kind", "DeleteOptions"}, {"gracePeriodSeconds", 5}, {"propagationPolicy", "Background"}};
  if (auto r =
          api_.call("DELETE", pods_path() + "/" + core::percent_encode(pod_name), options, "deleting pod " + pod_name);
      !r && r.error().code != Errc::not_found) {
    return r.error();
  }
  const std::string secret = secret_name_for(pod_name);
  if (auto r = api_.call("DELETE", secrets_path() + "/" + core::percent_encode(secret), options,
                         "deleting secret " + secret);
      !r && r.error().code != Errc::not_found) {
    return r.error();
  }
  return {};
}

Instance KubernetesBackend::instance_of(const json& pod) const {
  const PodView v = view_pod(pod);
  Instance in;
  in.sandbox_id = v.sandbox_id;
  in.placement = Placement{v.name, v.ip, config_.pod.execd_port};
  in.status = status_of(v);
  const std::string secret = secret_name_for(v.name);
  auto s = api_.call("GET", secrets_path() + "/" + core::percent_encode(secret), nullptr, "reading secret " + secret);
  auto token = s ? decode_base64(s->value("data", json::object()).value(keys::kTokenKey, ""))
                 : core::Result<std::string>(s.error());
  if (!token || token->empty()) {
    spdlog::debug("kubernetes backend: pod {} without a readable token: {}", v.name,
                  token ? "empty" : token.error().message);
    return in;
  }
  auto labels = labels_from_pod(pod, *token);
  if (labels) in.labels = std::move(*labels);
  return in;
}

core::Result<std::vector<Instance>> KubernetesBackend::list() {
  auto pods =
      api_.call("GET", pods_path() + "?labelSelector=" + selector_for(config_.pod), nullptr, "listing sandbox pods");
  if (!pods) return pods.error();
  std::vector<Instance> out;
  for (const auto& pod : pods->value("items", json::array())) {
    if (view_pod(pod).sandbox_id.empty()) continue;
    out.push_back(instance_of(pod));
  }
  return out;
}

core::Result<std::optional<Instance>> KubernetesBackend::find(const std::string& sandbox_id) {
  const std::string name = pod_name_for(sandbox_id);
  auto pod = api_.call("GET", pods_path() + "/" + core::percent_encode(name), nullptr, "reading pod " + name);
  if (!pod) {
    if (pod.error().code == Errc::not_found) return std::optional<Instance>();
    return pod.error();
  }
  // Another gateway's pod, or another id hashed to the same name, is not this sandbox.
  const json labels = pod->value("metadata", json::object()).value("labels", json::object());
  if (view_pod(*pod).sandbox_id != sandbox_id ||
      labels.value(keys::kGatewayLabel, "") != config_.pod.gateway_instance) {
    return std::optional<Instance>();
  }
  return std::optional<Instance>(instance_of(*pod));
}

core::Result<void> KubernetesBackend::relabel(const Placement& placement, const InstanceLabels& labels) {
  const json patch = {{"metadata", {{"annotations", label_annotations(labels)}}}};
  auto r = api_.call("PATCH", pods_path() + "/" + core::percent_encode(placement.handle), patch,
                     "relabelling pod " + placement.handle, kMergePatch);
  if (!r) return r.error();
  return {};
}

core::Result<std::vector<PodRecord>> KubernetesBackend::records() const {
  auto pods =
      api_.call("GET", pods_path() + "?labelSelector=" + selector_for(config_.pod), nullptr, "listing sandbox pods");
  if (!pods) return pods.error();
  std::vector<PodRecord> out;
  for (const auto& pod : pods->value("items", json::array())) {
    auto record = record_from_pod(pod, config_.pod.execd_port);
    if (!record) {
      spdlog::warn("kubernetes backend: {}", record.error().message);
      continue;
    }
    auto secret = api_.call("GET", secrets_path() + "/" + core::percent_encode(record->token_secret), nullptr,
                            "reading secret " + record->token_secret);
    if (!secret) return secret.error();
    auto token = decode_base64(secret->value("data", json::object()).value(keys::kTokenKey, ""));
    if (!token || token->empty())
      return make_error(Errc::unavailable, "secret " + record->token_secret + " holds no token");
    record->sandbox.access_token = std::move(*token);
    out.push_back(std::move(*record));
  }
  return out;
}

}  // namespace execd::gateway
