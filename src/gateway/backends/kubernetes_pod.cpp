#include "gateway/backends/kubernetes_pod.hpp"

#include <cctype>
#include <cstdio>
#include <ctime>

#include "gateway/resource_quantity.hpp"

namespace execd::gateway {
namespace {

using core::Errc;
using core::make_error;
using nlohmann::json;
namespace keys = kube_keys;

// Container reasons that keep a pod Pending for good: the image cannot be had, or the
// container cannot be made from what the pod says.
bool is_stuck_reason(const std::string& reason) {
  return reason == "ErrImagePull" || reason == "ImagePullBackOff" || reason == "InvalidImageName" ||
         reason == "ErrImageNeverPull" || reason == "CreateContainerConfigError" || reason == "CreateContainerError" ||
         reason == "RunContainerError";
}

std::string hex8(std::string_view text) {
  uint32_t h = 2166136261u;  // FNV-1a: stable across builds and machines
  for (const unsigned char c : text) h = (h ^ c) * 16777619u;
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", h);
  return buf;
}

std::string cpu_text(uint32_t millis) {
  return std::to_string(millis) + "m";
}

// The wrapper that starts the sandbox container: the token is taken from the variable the
// Secret fills and the variable is unset before the bundle's start.sh runs execd (which
// scrubs it from its argv) beside the entrypoint, so the user's processes never see it.
std::string start_wrapper(int port) {
  return "t=$EXECD_SANDBOX_TOKEN; unset EXECD_SANDBOX_TOKEN; exec /opt/execd/busybox sh /opt/execd/start.sh " +
         std::to_string(port) + " \"$t\" \"$@\"";
}

json labels_for(const KubePodOptions& o, const std::string& sandbox_id) {
  return {{keys::kSandboxLabel, label_value_for(sandbox_id)},
          {keys::kGatewayLabel, o.gateway_instance},
          {keys::kNameLabel, "execd-sandbox"},
          {keys::kManagedByLabel, "execd-gateway"}};
}

bool is_env_name(const std::string& name) {
  // The API's rule (validation.IsEnvVarName): [-._a-zA-Z][-._a-zA-Z0-9]*
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name.front())) != 0) return false;
  for (const unsigned char c : name) {
    if (std::isalnum(c) == 0 && c != '-' && c != '.' && c != '_') return false;
  }
  return true;
}

}  // namespace

std::string pod_name_for(std::string_view sandbox_id) {
  std::string name = "sbx-";
  bool changed = false;
  for (const unsigned char c : sandbox_id) {
    if (std::isdigit(c) != 0 || (c >= 'a' && c <= 'z') || c == '-') {
      name.push_back(static_cast<char>(c));
    } else if (c >= 'A' && c <= 'Z') {
      name.push_back(static_cast<char>(std::tolower(c)));
      changed = true;
    } else {
      name.push_back('-');
      changed = true;
    }
  }
  // "-token" is appended for the Secret; keep the pod name short enough for both.
  constexpr size_t kMax = 63 - 6;
  if (name.size() > kMax) changed = true;
  if (changed) name = name.substr(0, kMax - 9) + "-" + hex8(sandbox_id);
  while (!name.empty() && name.back() == '-') name.pop_back();
  return name;
}

std::string label_value_for(std::string_view sandbox_id) {
  bool ok = !sandbox_id.empty() && sandbox_id.size() <= 63 &&
            std::isalnum(static_cast<unsigned char>(sandbox_id.front())) != 0 &&
            std::isalnum(static_cast<unsigned char>(sandbox_id.back())) != 0;
  for (const unsigned char c : sandbox_id) ok = ok && (std::isalnum(c) != 0 || c == '-' || c == '_' || c == '.');
  return ok ? std::string(sandbox_id) : "h-" + hex8(sandbox_id);
}

std::string secret_name_for(std::string_view pod_name) {
  return std::string(pod_name) + "-token";
}

core::Result<void> check_pod_spec(const SandboxSpec& spec) {
  if (spec.limits.max_pids != 0) {
    return make_error(
        Errc::invalid_argument,
        "resourceLimits.pids: Kubernetes limits process ids per node (the kubelet's podPidsLimit), not per pod");
  }
  for (const auto& [name, _] : spec.env) {
    if (!is_env_name(name))
      return make_error(Errc::invalid_argument, "env: '" + name + "' is not a variable name Kubernetes accepts");
    if (name == "EXECD_SANDBOX_TOKEN")
      return make_error(Errc::invalid_argument, "env: EXECD_SANDBOX_TOKEN is reserved");
  }
  if (spec.image.empty()) return make_error(Errc::invalid_argument, "image.uri: empty");
  return {};
}

json make_sandbox_pod(const KubePodOptions& o, const std::string& sandbox_id, const SandboxSpec& spec,
                      TimePoint created_at, std::optional<TimePoint> expires_at) {
  const std::string name = pod_name_for(sandbox_id);
  const auto& l = spec.limits;

  json resources = json::object();
  json limits = json::object();
  const uint32_t cpu = l.cpu_millis != 0 ? l.cpu_millis : o.default_cpu_millis;
  const uint64_t memory = l.memory_bytes != 0 ? l.memory_bytes : o.default_memory_bytes;
  json requests = {{"cpu", cpu_text(cpu)}, {"memory", std::to_string(memory)}};
  // What the create asked for is a limit (and requested whole, so the scheduler places
  // only what it can hold); without one the defaults are requested and nothing capped.
  if (l.cpu_millis != 0) limits["cpu"] = cpu_text(l.cpu_millis);
  if (l.memory_bytes != 0) limits["memory"] = std::to_string(l.memory_bytes);
  if (l.disk_bytes != 0) {
    requests["ephemeral-storage"] = std::to_string(l.disk_bytes);
    limits["ephemeral-storage"] = std::to_string(l.disk_bytes);
  }
  resources["requests"] = requests;
  if (!limits.empty()) resources["limits"] = limits;

  json env = json::array();
  env.push_back({{"name", "EXECD_SANDBOX_TOKEN"},
                 {"valueFrom", {{"secretKeyRef", {{"name", secret_name_for(name)}, {"key", keys::kTokenKey}}}}}});
  if (spec.env.find("HOME") == spec.env.end()) env.push_back({{"name", "HOME"}, {"value", "/workspace"}});
  for (const auto& [k, v] : spec.env) env.push_back({{"name", k}, {"value", v}});

  json command = {"/opt/execd/busybox", "sh", "-c", start_wrapper(o.execd_port), "execd-start"};
  for (const auto& arg : spec.entrypoint) command.push_back(arg);

  json container_security = {{"allowPrivilegeEscalation", false},
                             {"capabilities", {{"drop", {"ALL"}}}},
                             {"readOnlyRootFilesystem", o.read_only_root}};
  json pod_security = {{"seccompProfile", {{"type", "RuntimeDefault"}}}};
  if (o.run_as_user != 0) {
    pod_security["runAsNonRoot"] = true;
    pod_security["runAsUser"] = o.run_as_user;
    pod_security["runAsGroup"] = o.run_as_user;
    pod_security["fsGroup"] = o.run_as_user;
  }

  json disk_volume = json::object();
  if (l.disk_bytes != 0) disk_volume["sizeLimit"] = std::to_string(l.disk_bytes);

  json init = {
      {"name", "execd-bundle"},
      {"image", o.bundle_image},
      {"imagePullPolicy", "IfNotPresent"},
      {"command", {"/opt/execd/busybox", "cp", "-a", "/opt/execd/.", "/bundle/"}},
      {"volumeMounts", {{{"name", "execd-bundle"}, {"mountPath", "/bundle"}}}},
      {"resources",
       {{"requests", {{"cpu", "50m"}, {"memory", "32Mi"}}}, {"limits", {{"cpu", "500m"}, {"memory", "64Mi"}}}}},
      {"securityContext",
       {{"allowPrivilegeEscalation", false}, {"capabilities", {{"drop", {"ALL"}}}}, {"readOnlyRootFilesystem", true}}},
  };
  json main = {
      {"name", keys::kSandboxContainer},
      {"image", spec.image},
      {"imagePullPolicy", "IfNotPresent"},
      {"command", command},
      {"env", env},
      {"workingDir", "/workspace"},
      {"ports", {{{"name", "execd"}, {"containerPort", o.execd_port}, {"protocol", "TCP"}}}},
      // Ready once execd listens; the gateway then checks /ping with the token itself.
      {"readinessProbe", {{"tcpSocket", {{"port", o.execd_port}}}, {"periodSeconds", 1}, {"failureThreshold", 3}}},
      {"resources", resources},
      {"securityContext", container_security},
      {"volumeMounts",
       {{{"name", "execd-bundle"}, {"mountPath", "/opt/execd"}, {"readOnly", true}},
        {{"name", "tmp"}, {"mountPath", "/tmp"}},
        {{"name", "workspace"}, {"mountPath", "/workspace"}}}},
  };

  InstanceLabels labels;
  labels.spec = spec;
  labels.created_at = created_at;
  labels.expires_at = expires_at;
  json annotations = label_annotations(labels);
  annotations[keys::kSandboxIdAnnotation] = sandbox_id;
  annotations[keys::kTokenSecretAnnotation] = secret_name_for(name);
  // Annotations are strings: an unset owner or expiry is left out of a new pod.
  for (const char* key : {keys::kOwnerReplicaAnnotation, keys::kOwnerUrlAnnotation, keys::kExpiresAnnotation}) {
    if (annotations[key].is_null() || annotations[key] == "") annotations.erase(key);
  }

  json pod_spec = {
      {"restartPolicy", "Never"},
      {"automountServiceAccountToken", false},
      {"enableServiceLinks", false},
      {"hostname", name},
      {"terminationGracePeriodSeconds", 5},
      {"securityContext", pod_security},
      {"initContainers", {init}},
      {"containers", {main}},
      {"volumes",
       {{{"name", "execd-bundle"}, {"emptyDir", {{"sizeLimit", "256Mi"}}}},
        {{"name", "tmp"}, {"emptyDir", disk_volume}},
        {{"name", "workspace"}, {"emptyDir", disk_volume}}}},
  };
  if (!o.runtime_class.empty()) pod_spec["runtimeClassName"] = o.runtime_class;

  json meta = {{"name", name}, {"labels", labels_for(o, sandbox_id)}, {"annotations", annotations}};
  if (!o.namespace_name.empty()) meta["namespace"] = o.namespace_name;
  return {{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", meta}, {"spec", pod_spec}};
}

json make_token_secret(const KubePodOptions& o, const std::string& sandbox_id, const std::string& token) {
  const json meta = {{"name", secret_name_for(pod_name_for(sandbox_id))},
                     {"labels", labels_for(o, sandbox_id)},
                     {"annotations", {{keys::kSandboxIdAnnotation, sandbox_id}}}};
  auto meta_with_namespace = [](json m, const std::string& ns) {
    m["namespace"] = ns;
    return m;
  };
  return {{"apiVersion", "v1"},
          {"kind", "Secret"},
          {"type", "Opaque"},
          {"immutable", true},
          {"metadata", o.namespace_name.empty() ? meta : meta_with_namespace(meta, o.namespace_name)},
          {"stringData", {{keys::kTokenKey, token}}}};
}

PodView view_pod(const json& pod) {
  PodView v;
  const json meta = pod.value("metadata", json::object());
  const json status = pod.value("status", json::object());
  v.name = meta.value("name", "");
  v.uid = meta.value("uid", "");
  v.is_deleting = meta.contains("deletionTimestamp") && !meta["deletionTimestamp"].is_null();
  if (const auto a = meta.find("annotations"); a != meta.end() && a->is_object()) {
    v.sandbox_id = a->value(keys::kSandboxIdAnnotation, "");
  }
  v.ip = status.value("podIP", "");
  if (const auto conditions = status.find("conditions"); conditions != status.end() && conditions->is_array()) {
    for (const auto& c : *conditions) {
      if (c.value("type", "") == "Ready") v.is_ready = c.value("status", "") == "True";
    }
  }
  const std::string phase = status.value("phase", "Pending");
  // The sandbox container's own state says more than the pod's phase: a terminated
  // container is a sandbox that ended, even while other containers linger.
  std::string terminated;
  std::string waiting;
  if (const auto statuses = status.find("containerStatuses"); statuses != status.end() && statuses->is_array()) {
    for (const auto& cs : *statuses) {
      if (cs.value("name", "") != keys::kSandboxContainer) continue;
      const json state = cs.value("state", json::object());
      if (const auto t = state.find("terminated"); t != state.end() && t->is_object()) {
        terminated = t->value("reason", "Terminated") + ", exit code " + std::to_string(t->value("exitCode", 0));
        if (const auto m = t->value("message", ""); !m.empty()) terminated += ": " + m;
      } else if (const auto w = state.find("waiting"); w != state.end() && w->is_object()) {
        const std::string reason = w->value("reason", "");
        if (is_stuck_reason(reason)) waiting = reason + ": " + w->value("message", "");
      }
    }
  }
  if (const auto inits = status.find("initContainerStatuses");
      inits != status.end() && inits->is_array() && waiting.empty()) {
    for (const auto& cs : *inits) {
      const json state = cs.value("state", json::object());
      if (const auto w = state.find("waiting"); w != state.end() && w->is_object()) {
        const std::string reason = w->value("reason", "");
        if (is_stuck_reason(reason))
          waiting = "init container " + cs.value("name", "") + ": " + reason + ": " + w->value("message", "");
      } else if (const auto t = state.find("terminated");
                 t != state.end() && t->is_object() && t->value("exitCode", 0) != 0) {
        terminated =
            "init container " + cs.value("name", "") + " failed, exit code " + std::to_string(t->value("exitCode", 0));
      }
    }
  }
  if (phase == "Succeeded" || phase == "Failed" || !terminated.empty()) {
    v.phase = InstanceStatus::Phase::exited;
    v.message = !terminated.empty() ? terminated : status.value("reason", phase);
    if (const auto m = status.value("message", ""); !m.empty() && terminated.empty()) v.message += ": " + m;
  } else if (phase == "Running") {
    v.phase = InstanceStatus::Phase::running;
  } else {
    v.phase = InstanceStatus::Phase::starting;
    if (!waiting.empty()) {
      v.message = waiting;
      v.is_stuck = true;
    } else if (const auto conditions = status.find("conditions");
               conditions != status.end() && conditions->is_array()) {
      for (const auto& c : *conditions) {
        if (c.value("type", "") == "PodScheduled" && c.value("status", "") == "False") {
          v.message = "not scheduled: " + c.value("message", c.value("reason", ""));
        }
      }
    }
  }
  return v;
}

core::Result<PodRecord> record_from_pod(const json& pod, int execd_port) {
  const PodView v = view_pod(pod);
  if (v.sandbox_id.empty())
    return make_error(Errc::invalid_argument,
                      "pod " + v.name + " has no " + keys::kSandboxIdAnnotation + " annotation");
  const json meta = pod.value("metadata", json::object());
  const json annotations = meta.value("annotations", json::object());
  PodRecord r;
  Sandbox& s = r.sandbox;
  s.id = v.sandbox_id;
  s.backend = "kubernetes";
  r.token_secret = annotations.value(keys::kTokenSecretAnnotation, "");
  const json spec = json::parse(annotations.value(keys::kSpecAnnotation, "{}"), nullptr, false);
  if (!spec.is_object())
    return make_error(Errc::invalid_argument, "pod " + v.name + ": the spec annotation is not a JSON object");
  try {
    s.spec.image = spec.value("image", "");
    s.spec.entrypoint = spec.value("entrypoint", std::vector<std::string>{});
    s.spec.env = spec.value("env", std::map<std::string, std::string>{});
    s.spec.metadata = spec.value("metadata", std::map<std::string, std::string>{});
    if (spec.contains("timeout")) s.spec.timeout = std::chrono::seconds(spec["timeout"].get<int64_t>());
    auto limits = parse_resource_limits(spec.value("resourceLimits", std::map<std::string, std::string>{}));
    if (!limits) return make_error(Errc::invalid_argument, "pod " + v.name + ": " + limits.error().message);
    s.spec.limits = *limits;
  } catch (const json::exception& e) {
    return make_error(Errc::invalid_argument, "pod " + v.name + ": the spec annotation: " + e.what());
  }
  const auto created = parse_kube_time(annotations.value(keys::kCreatedAnnotation, ""));
  if (!created) return make_error(Errc::invalid_argument, "pod " + v.name + ": no valid " + keys::kCreatedAnnotation);
  s.created_at = s.updated_at = s.last_transition_at = *created;
  if (annotations.contains(keys::kExpiresAnnotation)) {
    const auto expires = parse_kube_time(annotations.value(keys::kExpiresAnnotation, ""));
    if (!expires) return make_error(Errc::invalid_argument, "pod " + v.name + ": bad " + keys::kExpiresAnnotation);
    s.expires_at = *expires;
  }
  s.placement = Placement{v.name, v.ip, execd_port};
  s.state = v.phase == InstanceStatus::Phase::running && v.is_ready ? SandboxState::running
            : v.phase == InstanceStatus::Phase::exited              ? SandboxState::failed
                                                                    : SandboxState::pending;
  s.message = v.message;
  return r;
}

json label_annotations(const InstanceLabels& labels) {
  json spec_doc = {{"image", labels.spec.image},
                   {"entrypoint", labels.spec.entrypoint},
                   {"env", labels.spec.env},
                   {"metadata", labels.spec.metadata},
                   {"resourceLimits", format_resource_limits(labels.spec.limits)}};
  if (labels.spec.timeout) spec_doc["timeout"] = labels.spec.timeout->count();
  return {{keys::kOwnerReplicaAnnotation, labels.owner_replica},
          {keys::kOwnerUrlAnnotation, labels.owner_url},
          {keys::kCreatedAnnotation, format_kube_time(labels.created_at)},
          {keys::kExpiresAnnotation, labels.expires_at ? json(format_kube_time(*labels.expires_at)) : json(nullptr)},
          {keys::kSpecAnnotation, spec_doc.dump()}};
}

core::Result<InstanceLabels> labels_from_pod(const json& pod, const std::string& token) {
  auto record = record_from_pod(pod, 0);
  if (!record) return record.error();
  const json annotations = pod.value("metadata", json::object()).value("annotations", json::object());
  InstanceLabels l;
  l.owner_replica = annotations.value(keys::kOwnerReplicaAnnotation, "");
  l.owner_url = annotations.value(keys::kOwnerUrlAnnotation, "");
  l.access_token = token;
  l.spec = record->sandbox.spec;
  l.created_at = record->sandbox.created_at;
  l.expires_at = record->sandbox.expires_at;
  return l;
}

std::string format_kube_time(TimePoint t) {
  const std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::optional<TimePoint> parse_kube_time(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS[.frac]Z
  if (text.size() < 20 || text.back() != 'Z') return std::nullopt;
  std::tm tm{};
  const std::string head(text.substr(0, 19));
  const char* end = strptime(head.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (end == nullptr || *end != '\0') return std::nullopt;
  const std::string_view rest = text.substr(19, text.size() - 20);
  if (!rest.empty()) {
    if (rest.front() != '.' || rest.size() < 2) return std::nullopt;
    for (const char c : rest.substr(1)) {
      if (std::isdigit(static_cast<unsigned char>(c)) == 0) return std::nullopt;
    }
  }
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

}  // namespace execd::gateway
