#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "http/client.hpp"

namespace execd::gateway {

/// What a container is asked to be (the subset of ContainerCreate the docker backend uses).
struct ContainerSpec {
  std::string name;                         ///< engine-wide unique; "" lets the engine pick
  std::string image;
  std::vector<std::string> entrypoint;      ///< replaces the image's ENTRYPOINT when non-empty
  std::vector<std::string> cmd;
  std::vector<std::string> env;             ///< "KEY=VALUE"
  std::map<std::string, std::string> labels;
  std::vector<std::string> binds;           ///< "host:container[:ro]"
  std::string network;                      ///< network to join (NetworkMode); "" = engine default
  std::string runtime;                      ///< OCI runtime ("runsc"); "" = engine default
  bool init = true;                         ///< docker-init as pid 1: reaps orphans, forwards signals
  uint64_t memory_bytes = 0;                ///< 0 = no limit; swap is capped to the same figure
  uint64_t nano_cpus = 0;                   ///< 1e9 = one core; 0 = no limit
  int64_t pids_limit = 0;                   ///< 0 = no limit
};

/// The engine's State of one container.
struct ContainerState {
  std::string status;  ///< created, running, paused, restarting, removing, exited, dead
  bool running = false;
  bool paused = false;
  bool oom_killed = false;
  int exit_code = 0;
  int pid = 0;         ///< pid 1 of the container as the host sees it; 0 when not running
  std::string error;
};

/// What ContainerInspect says of one container.
struct ContainerInfo {
  std::string id;
  std::string name;  ///< without the leading "/"
  ContainerState state;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> network_ips;  ///< network name -> IPv4 address
};

/// One row of ContainerList.
struct ContainerSummary {
  std::string id;
  std::vector<std::string> names;  ///< without the leading "/"
  std::string state;               ///< as ContainerState::status
  std::string status;              ///< "Up 3 minutes", "Exited (137) 2 seconds ago"
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> network_ips;
};

/// What ImageInspect says of one local image.
struct ImageInfo {
  std::string id;
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
};

/// One row of NetworkList.
struct NetworkSummary {
  std::string id;
  std::string name;
  std::map<std::string, std::string> labels;
};

/// The engine as a whole (SystemInfo).
struct EngineInfo {
  uint64_t mem_total = 0;
  int ncpu = 0;
  std::vector<std::string> runtimes;
  std::string server_version;
};

/// A typed client of the Docker Engine API over its unix socket (or TCP), one HTTP
/// exchange per call (http::send_request). The API version is negotiated once, in
/// connect(): the engine's own version, which must be at least kMinApiVersion. Errors are
/// values carrying the engine's `message`: 404 -> not_found, 409 -> conflict, 400 ->
/// invalid_argument, other failures and an unreachable engine -> unavailable. Immutable
/// after connect(), so one instance may be used from any number of threads.
class DockerEngine {
 public:
  static constexpr const char* kMinApiVersion = "1.41";

  /// Parses `docker_host` ("unix:///var/run/docker.sock", "tcp://host:2375") and asks
  /// the engine its API version (GET /version).
  static core::Result<DockerEngine> connect(const std::string& docker_host,
                                            std::chrono::milliseconds timeout = std::chrono::seconds(30));

  [[nodiscard]] const std::string& api_version() const { return api_version_; }

  core::Result<EngineInfo> info() const;

  /// Creates (does not start) a container; returns its id.
  core::Result<std::string> create_container(const ContainerSpec& spec) const;
  core::Result<void> start_container(const std::string& id_or_name) const;
  core::Result<ContainerInfo> inspect_container(const std::string& id_or_name) const;
  core::Result<void> pause_container(const std::string& id_or_name) const;
  core::Result<void> unpause_container(const std::string& id_or_name) const;
  core::Result<void> kill_container(const std::string& id_or_name, const std::string& signal = "SIGKILL") const;
  /// Force-removes a running container and its anonymous volumes.
  core::Result<void> remove_container(const std::string& id_or_name) const;
  /// Every container (running or not) carrying all of `labels` ("key=value" or "key").
  core::Result<std::vector<ContainerSummary>> list_containers(const std::vector<std::string>& labels) const;

  /// not_found when the image is not local (no registry is asked).
  core::Result<ImageInfo> inspect_image(const std::string& name) const;
  /// Imports a root filesystem tar as `repo:tag` (POST /images/create?fromSrc=-); returns the image id.
  core::Result<std::string> import_image(const std::string& tar, const std::string& repo, const std::string& tag) const;

  /// A bridge network of its own; returns its id. `bridge_name`, when set, names the
  /// host's bridge interface (the driver option com.docker.network.bridge.name).
  core::Result<std::string> create_network(const std::string& name, const std::map<std::string, std::string>& labels,
                                           const std::string& bridge_name = "") const;
  core::Result<void> remove_network(const std::string& id_or_name) const;
  core::Result<std::vector<NetworkSummary>> list_networks(const std::vector<std::string>& labels) const;

 private:
  DockerEngine(http::ClientEndpoint endpoint, std::chrono::milliseconds timeout)
      : endpoint_(std::move(endpoint)), timeout_(timeout) {}

  /// One call under /v<api_version>; a non-2xx answer becomes an Error naming `what`.
  core::Result<http::ClientResponse> call(const std::string& method, const std::string& target, std::string body,
                                          const std::string& what,
                                          const std::string& content_type = "application/json") const;

  http::ClientEndpoint endpoint_;
  std::chrono::milliseconds timeout_;
  std::string api_version_;
};

}  // namespace execd::gateway
