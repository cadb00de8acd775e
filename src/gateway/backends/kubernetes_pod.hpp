#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.hpp"
#include "gateway/backend.hpp"
#include "gateway/sandbox.hpp"

namespace execd::gateway {

/// What every sandbox pod of one gateway shares (its flags), beside the spec.
struct KubePodOptions {
  std::string namespace_name;                ///< empty: left out of the objects (KubernetesBackend::open fills it)
  std::string gateway_instance = "default";  ///< label execd.io/gateway: list() finds only these
  /// An image holding `make bundle`'s output at /opt/execd; the init container copies it
  /// into an emptyDir that the sandbox container mounts read-only at /opt/execd.
  std::string bundle_image = "execd-bundle:latest";
  std::string runtime_class;  ///< e.g. "gvisor"; empty: the cluster's default
  int execd_port = 44772;
  int64_t run_as_user = 1000;                    ///< sandbox processes' uid (non-root); 0: root, the image's default
  bool read_only_root = true;                    ///< root filesystem read-only; /tmp and /workspace are emptyDirs
  uint32_t default_cpu_millis = 250;             ///< requested when resourceLimits names no cpu
  uint64_t default_memory_bytes = 256ull << 20;  ///< requested when resourceLimits names no memory
};

/// Labels and annotations the backend writes and reads back.
namespace kube_keys {
inline constexpr const char* kSandboxLabel = "execd.io/sandbox";
inline constexpr const char* kGatewayLabel = "execd.io/gateway";
inline constexpr const char* kNameLabel = "app.kubernetes.io/name";  ///< "execd-sandbox" (NetworkPolicy selects it)
inline constexpr const char* kManagedByLabel = "app.kubernetes.io/managed-by";
inline constexpr const char* kSandboxIdAnnotation = "execd.io/sandbox-id";      ///< the id exactly
inline constexpr const char* kTokenSecretAnnotation = "execd.io/token-secret";  ///< Secret holding the execd token
inline constexpr const char* kCreatedAnnotation = "execd.io/created-at";
inline constexpr const char* kExpiresAnnotation = "execd.io/expires-at";          ///< absent: no expiry
inline constexpr const char* kSpecAnnotation = "execd.io/spec";                   ///< the create's spec as JSON
inline constexpr const char* kOwnerReplicaAnnotation = "execd.io/owner-replica";  ///< InstanceLabels::owner_replica
inline constexpr const char* kOwnerUrlAnnotation = "execd.io/owner-url";          ///< InstanceLabels::owner_url
inline constexpr const char* kTokenKey = "token";                                 ///< the Secret's data key
inline constexpr const char* kSandboxContainer = "sandbox";
}  // namespace kube_keys

/// A DNS-1035 label for the sandbox's pod: "sbx-" and the id lowercased, characters
/// outside [a-z0-9-] replaced by '-', at most 63 characters; when anything had to change,
/// a hash of the exact id is appended so two ids never share a name.
std::string pod_name_for(std::string_view sandbox_id);
/// A label value carrying the id (63 characters of [A-Za-z0-9._-], alphanumeric ends),
/// hashed the same way when the id itself is not one.
std::string label_value_for(std::string_view sandbox_id);
/// The Secret that holds a sandbox's execd token: "<pod name>-token" (a DNS-1123 subdomain).
std::string secret_name_for(std::string_view pod_name);

/// Checks a spec against what a pod can express: env names the API accepts, no pids
/// limit (Kubernetes caps pids per node, not per pod), quantities in range.
core::Result<void> check_pod_spec(const SandboxSpec& spec);

/// The Pod object (v1) the backend POSTs for a sandbox: labels and annotations above,
/// restartPolicy Never, automountServiceAccountToken false, no service links, a
/// non-root seccomp RuntimeDefault security context, the bundle init container, the
/// sandbox container (the spec's image; execd beside the spec's entrypoint, its token
/// from the Secret through an environment variable that the start wrapper unsets before
/// anything else runs), requests = limits from resourceLimits (or the defaults), a TCP
/// readiness probe on execd's port, optional runtimeClassName.
nlohmann::json make_sandbox_pod(const KubePodOptions& options, const std::string& sandbox_id, const SandboxSpec& spec,
                                TimePoint created_at, std::optional<TimePoint> expires_at);
/// The Secret (v1, Opaque) holding `token` under kube_keys::kTokenKey, labelled like the pod.
nlohmann::json make_token_secret(const KubePodOptions& options, const std::string& sandbox_id,
                                 const std::string& token);

/// What the backend needs to know of a Pod object the API returned.
struct PodView {
  std::string name;
  std::string sandbox_id;  ///< from the annotation (the label may be hashed)
  std::string uid;
  std::string ip;            ///< status.podIP; empty until scheduled and started
  bool is_ready = false;     ///< condition Ready is True
  bool is_deleting = false;  ///< deletionTimestamp set
  InstanceStatus::Phase phase = InstanceStatus::Phase::starting;
  /// Why it ended (exited), or why it cannot start: a container waiting for a reason
  /// that will not pass by itself (ErrImagePull, InvalidImageName, ...).
  std::string message;
  bool is_stuck = false;  ///< `message` names such a reason while Pending
};
PodView view_pod(const nlohmann::json& pod);

/// The annotations that carry InstanceLabels (all but the token, which stays in the
/// Secret): owner replica and URL, created and expiry times, the spec. An absent expiry
/// is null, so the object also serves as a JSON merge patch that removes it.
nlohmann::json label_annotations(const InstanceLabels& labels);

/// InstanceLabels read back from a pod's annotations, with `token` from its Secret.
core::Result<InstanceLabels> labels_from_pod(const nlohmann::json& pod, const std::string& token);

/// What a restarted gateway can rebuild of a sandbox from its pod: id, spec, created and
/// expiry times and placement from the annotations and status; the token is in the
/// Secret `token_secret` names.
struct PodRecord {
  Sandbox sandbox;
  std::string token_secret;
};
core::Result<PodRecord> record_from_pod(const nlohmann::json& pod, int execd_port);

/// Kubernetes' metav1.Time: RFC 3339 in UTC with seconds ("2026-11-30T13:45:00Z"), and
/// back (a fraction accepted; only Z, as the API server writes them).
std::string format_kube_time(TimePoint t);
std::optional<TimePoint> parse_kube_time(std::string_view text);

}  // namespace execd::gateway
