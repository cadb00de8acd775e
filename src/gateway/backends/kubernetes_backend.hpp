#pragma once

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "gateway/backend.hpp"
#include "gateway/backends/kubernetes_api.hpp"
#include "gateway/backends/kubernetes_pod.hpp"
#include "gateway/backends/kubernetes_watermark.hpp"

namespace execd::gateway {

/// How the kubernetes backend reaches its cluster and what it puts in each pod.
struct KubernetesBackendConfig {
  KubeApiConfig api;          ///< from --kubeconfig, or the pod's service account
  KubePodOptions pod;         ///< namespace comes from api.namespace_name unless set with --k8s-namespace
  KubeThresholds thresholds;  ///< the watermark
  /// A Pod (JSON or YAML, e.g. the ConfigMap deploy/k8s mounts) whose placement fields
  /// are copied into every sandbox pod: labels, annotations, nodeSelector, tolerations,
  /// affinity, priorityClassName, imagePullSecrets, dnsPolicy, dnsConfig. Empty: none.
  std::string pod_template_path;
  std::chrono::milliseconds ready_timeout{std::chrono::minutes(2)};  ///< create's wait for Ready (image pulls)
  std::chrono::milliseconds api_timeout{std::chrono::seconds(15)};   ///< one API request
};

/// Sandboxes as pods (one per sandbox) in one namespace, spoken to through the API
/// server (KubernetesApi over HTTPS; never kubectl). The execd token lives in a Secret
/// per sandbox (owned by its pod, so the cluster removes it with the pod); labels carry
/// the sandbox and this gateway's instance name, annotations what a restarted gateway
/// needs to rebuild its row (PodRecord). create() waits for the pod's Ready condition
/// with a watch, not a polling loop. Kubernetes has no freezer in its pod API, so pause
/// and resume are not_supported. Stateless apart from the cluster: thread-safe.
class KubernetesBackend final : public Backend {
 public:
  /// Builds the API client and checks the namespace answers (a pod list of one).
  /// invalid_argument for a bad configuration; unavailable or permission_denied from
  /// the API server otherwise.
  static core::Result<std::shared_ptr<KubernetesBackend>> open(KubernetesBackendConfig config);

  [[nodiscard]] std::string_view name() const override { return "kubernetes"; }
  core::Result<void> validate(const SandboxSpec& spec) const override;
  core::Result<void> has_room(const SandboxSpec& spec) const override;
  core::Result<Placement> create(const std::string& sandbox_id, const SandboxSpec& spec,
                                 const std::string& access_token) override;
  core::Result<InstanceStatus> inspect(const Placement& placement) override;
  /// not_supported: a pod's processes cannot be frozen through the Kubernetes API.
  core::Result<void> pause(const Placement& placement) override;
  core::Result<void> resume(const Placement& placement) override;
  core::Result<void> remove(const Placement& placement) override;
  /// Every pod of this gateway's instance name (replicas share one), each with its
  /// InstanceLabels read back from the annotations and the token's Secret.
  core::Result<std::vector<Instance>> list() override;

  /// create(), with the owner replica, its URL, the times and the spec from `labels` in
  /// the pod's annotations (the token in the Secret): what another replica needs to
  /// forward to the owner or adopt the sandbox.
  core::Result<Placement> create_labelled(const std::string& sandbox_id, const SandboxSpec& spec,
                                          const InstanceLabels& labels) override;
  /// A JSON merge patch of the pod's annotations (owner, expiry, spec with metadata).
  core::Result<void> relabel(const Placement& placement, const InstanceLabels& labels) override;
  /// One GET of the sandbox's pod (its name follows from the id); nullopt when there is none.
  core::Result<std::optional<Instance>> find(const std::string& sandbox_id) override;

  /// What each of this gateway's pods says of its sandbox, with the token read back from
  /// its Secret: enough to rebuild the table's rows after the table itself was lost.
  core::Result<std::vector<PodRecord>> records() const;

  /// The pod object create() would send for this spec (what the schema checks validate).
  [[nodiscard]] nlohmann::json render_pod(const std::string& sandbox_id, const SandboxSpec& spec, TimePoint created_at,
                                          std::optional<TimePoint> expires_at) const;

  [[nodiscard]] const KubernetesApi& api() const { return api_; }

  KubernetesBackend(KubernetesBackendConfig config, KubernetesApi api, nlohmann::json pod_template)
      : config_(std::move(config)), api_(std::move(api)), template_(std::move(pod_template)) {}

 private:
  [[nodiscard]] std::string pods_path() const;
  [[nodiscard]] std::string secrets_path() const;
  /// Watches the pod until it is Ready with an IP (the placement), has ended or is stuck
  /// (an error naming why), or the deadline passes.
  core::Result<Placement> await_ready(const std::string& pod_name, nlohmann::json pod,
                                      std::chrono::steady_clock::time_point deadline) const;
  /// An Instance for a pod of ours, labels included (nullopt labels when its Secret is unreadable).
  [[nodiscard]] Instance instance_of(const nlohmann::json& pod) const;
  /// Deletes the pod and its Secret; what is already gone is fine.
  core::Result<void> remove_named(const std::string& pod_name) const;

  KubernetesBackendConfig config_;
  KubernetesApi api_;
  nlohmann::json template_;  ///< the parsed pod template, or null
};

/// Copies the template's placement fields (see KubernetesBackendConfig::pod_template_path)
/// into `pod`; the backend's own labels and annotations win over the template's.
void apply_pod_template(nlohmann::json& pod, const nlohmann::json& pod_template);

}  // namespace execd::gateway
