#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"
#include "gateway/sandbox.hpp"

namespace execd::gateway {

/// What an engine says of one instance.
struct InstanceStatus {
  enum class Phase { starting, running, paused, exited, gone };
  Phase phase = Phase::gone;
  std::string message;  ///< why it exited ("exit code 3", "OOM killed"), for `Failed`
};

/// One instance found in the engine (labels, live children, pods): reconciling a
/// restarted gateway's table against these keeps what still runs and reaps the rest.
struct Instance {
  std::string sandbox_id;
  Placement placement;
  InstanceStatus status;
  /// What the engine stored with it (create_labelled / relabel); nullopt when the
  /// backend keeps no labels or the instance predates them.
  std::optional<InstanceLabels> labels;
};

/// An engine that runs sandboxes: local processes, Docker, Kubernetes, a remote gateway.
/// Every call may block (engine round trips, process start-up); the service calls them
/// off the request threads and never holds its own lock across one. Implementations are
/// thread-safe. Errors are values: invalid_argument names the spec field at fault
/// (unknown image, limit the engine cannot express), unavailable means the engine is
/// down or full (the message says what ran out), not_found a handle that is gone.
class Backend {
 public:
  virtual ~Backend() = default;

  /// "process", "docker", "kubernetes", "remote": stored with each sandbox.
  [[nodiscard]] virtual std::string_view name() const = 0;

  /// Checks a spec against what this backend can run, without side effects (the image
  /// exists, the limits are expressible); the service calls it before answering 202.
  virtual core::Result<void> validate(const SandboxSpec& spec) const = 0;

  /// Room for one more sandbox like `spec` (engine-side numbers: memory, pids, node
  /// allocatable). unavailable with a message naming what ran out otherwise. The
  /// service's own --max-sandboxes count is checked separately.
  virtual core::Result<void> has_room(const SandboxSpec& spec) const = 0;

  /// Starts the sandbox: execd (started with `access_token`) plus the spec's entrypoint,
  /// with the spec's limits and env. Returns once the engine has started it, not once
  /// execd answers (the service waits for /ping). On failure nothing is left behind.
  virtual core::Result<Placement> create(const std::string& sandbox_id, const SandboxSpec& spec,
                                         const std::string& access_token) = 0;

  virtual core::Result<InstanceStatus> inspect(const Placement& placement) = 0;
  /// Freezes every process of the sandbox (cgroup freezer, docker pause, ...).
  virtual core::Result<void> pause(const Placement& placement) = 0;
  virtual core::Result<void> resume(const Placement& placement) = 0;
  /// Ends the sandbox and removes all it had (processes, container, cgroup, workspace).
  /// Idempotent: removing what is already gone succeeds.
  virtual core::Result<void> remove(const Placement& placement) = 0;

  /// Every instance of this gateway's that the engine still has (for reconciling).
  /// Replicas sharing one engine see each other's: Instance::labels says whose.
  virtual core::Result<std::vector<Instance>> list() = 0;

  // ---- labels: what lets replicas share one engine with no shared table or lock ----
  // Defaulted so that a backend without labels still works for a single gateway.

  /// create, storing `labels` with the instance where the engine can keep them (the
  /// service always calls this one). Default: create() with the labels' token, nothing stored.
  virtual core::Result<Placement> create_labelled(const std::string& sandbox_id, const SandboxSpec& spec,
                                                  const InstanceLabels& labels) {
    return create(sandbox_id, spec, labels.access_token);
  }
  /// Makes the sandbox known to the engine, with its labels, before it starts (the
  /// service calls it when replicas share the engine, before answering 202), so that
  /// another replica asked for it at once finds its owner. Returns the placement to
  /// remove should the sandbox never start (empty handle: nothing was kept). Default:
  /// nothing kept.
  virtual core::Result<Placement> reserve(const std::string& sandbox_id, const InstanceLabels& labels) {
    (void)sandbox_id;
    (void)labels;
    return Placement{};
  }
  /// Replaces the labels stored with a live instance (a renew, a metadata patch, a new
  /// owner). Default: nothing stored, nothing to do.
  virtual core::Result<void> relabel(const Placement& placement, const InstanceLabels& labels) {
    (void)placement;
    (void)labels;
    return {};
  }
  /// The instance of `sandbox_id`, whoever owns it; nullopt when the engine has none.
  /// Default: a scan of list().
  virtual core::Result<std::optional<Instance>> find(const std::string& sandbox_id) {
    auto all = list();
    if (!all) return all.error();
    for (auto& i : *all) {
      if (i.sandbox_id == sandbox_id) return std::optional<Instance>(std::move(i));
    }
    return std::optional<Instance>();
  }
};

}  // namespace execd::gateway
