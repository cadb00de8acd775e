#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <string_view>
#include <vector>

#include "core/result.hpp"
#include "gateway/backend.hpp"
#include "gateway/backends/docker_engine.hpp"

namespace execd::gateway {

/// How the docker backend reaches its engine and what it puts in each container.
struct DockerBackendConfig {
  std::string docker_host = "unix:///var/run/docker.sock";  ///< --docker-host
  /// This gateway's name on the engine (label io.execd.gateway): list() finds only its
  /// own containers, so two gateways may share one engine.
  std::string instance = "default";
  /// Host path of `make bundle`'s output, bind-mounted read-only at /opt/execd.
  std::string bundle_dir;
  std::string runtime;          ///< OCI runtime for every container ("runsc"); "" = engine default
  uint32_t max_containers = 0;  ///< this gateway's containers at once; 0 = only the engine's memory bounds it
  int execd_port = 44772;       ///< execd's port inside each container
  /// --docker-host-firewall: at open(), make sure new connections from the sandboxes'
  /// bridges to this host are refused (DockerHostFirewall; needs root and iptables, and
  /// the gateway in the engine's network namespace). false: the operator protects the host.
  bool host_firewall = true;
};

/// Sandboxes as Docker containers, spoken to over the Engine API (DockerEngine; never the
/// CLI). Each sandbox gets a bridge network of its own named like its container,
/// `execd-<sandbox id>`, on a host bridge named `exd<hash>`: the gateway reaches execd at
/// the container's address on it, the engine's isolation between bridge networks
/// (dockerd --iptables) keeps sandboxes from reaching each other, and DockerHostFirewall's
/// rule keeps them from opening connections to the host. execd comes from the bundle mounted at /opt/execd and runs beside the spec's
/// entrypoint (or the image's, or alone), started by the bundle's own busybox so images
/// without a shell work. Labels carry the sandbox id, this gateway's instance name and the
/// memory asked (has_room adds those up). Stateless apart from the engine: every method is
/// thread-safe, and a new instance finds the containers an earlier one made.
class DockerBackend final : public Backend {
 public:
  static constexpr const char* kSandboxLabel = "io.execd.sandbox";
  static constexpr const char* kGatewayLabel = "io.execd.gateway";
  static constexpr const char* kMemoryLabel = "io.execd.memory";
  static constexpr const char* kBundleMount = "/opt/execd";

  /// Connects to the engine and checks the configuration against it: the bundle has an
  /// execd, the runtime is one the engine knows. unavailable when the engine cannot be
  /// reached; invalid_argument naming the setting at fault.
  static core::Result<DockerBackend> open(DockerBackendConfig config);

  [[nodiscard]] std::string_view name() const override { return "docker"; }
  core::Result<void> validate(const SandboxSpec& spec) const override;
  core::Result<void> has_room(const SandboxSpec& spec) const override;
  core::Result<Placement> create(const std::string& sandbox_id, const SandboxSpec& spec,
                                 const std::string& access_token) override;
  core::Result<InstanceStatus> inspect(const Placement& placement) override;
  core::Result<void> pause(const Placement& placement) override;
  core::Result<void> resume(const Placement& placement) override;
  core::Result<void> remove(const Placement& placement) override;
  core::Result<std::vector<Instance>> list() override;

  /// The engine client, for callers that need more of the engine (tests, images).
  [[nodiscard]] const DockerEngine& engine() const { return engine_; }

 private:
  DockerBackend(DockerBackendConfig config, DockerEngine engine, EngineInfo info)
      : config_(std::move(config)), engine_(std::move(engine)), engine_info_(std::move(info)) {}

  /// validate() without the image: limits the engine can express, env names.
  core::Result<void> check_limits(const SandboxSpec& spec) const;
  /// The container (and its network) made for `sandbox_id`.
  [[nodiscard]] static std::string resource_name(const std::string& sandbox_id);
  /// Removes a container and the network of the same name; what is already gone is fine.
  core::Result<void> remove_named(const std::string& name) const;

  DockerBackendConfig config_;
  DockerEngine engine_;
  EngineInfo engine_info_;  ///< memory and cores as of open(): what has_room and validate weigh asks against
};

}  // namespace execd::gateway
