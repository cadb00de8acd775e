#include "gateway/backends/docker_backend.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <utility>

#include "gateway/backends/docker_host_firewall.hpp"

namespace execd::gateway {

namespace {

// Docker refuses a memory limit below this (it could not even start the runtime's shim).
constexpr uint64_t kMinMemoryBytes = 6ull << 20;
// Docker's NanoCpus has a floor of 0.01 CPU.
constexpr uint32_t kMinCpuMillis = 10;

std::string mib(uint64_t bytes) { return std::to_string(bytes >> 20) + "MiB"; }

bool is_live_state(const std::string& state) { return state != "exited" && state != "dead"; }

/// The engine's words for a container that stopped, as InstanceStatus::message says them.
std::string exit_message(const ContainerState& s) {
  std::string m = s.oom_killed ? "OOM killed (memory limit), exit code " + std::to_string(s.exit_code)
                               : "exit code " + std::to_string(s.exit_code);
  if (!s.error.empty()) m += ": " + s.error;
  return m;
}

InstanceStatus::Phase phase_of(const std::string& state, bool paused) {
  if (state == "running") return paused ? InstanceStatus::Phase::paused : InstanceStatus::Phase::running;
  if (state == "paused") return InstanceStatus::Phase::paused;
  if (state == "created" || state == "restarting") return InstanceStatus::Phase::starting;
  return InstanceStatus::Phase::exited;  // exited, dead, removing
}

core::Result<void> image_error(const core::Error& e, const std::string& image) {
  if (e.code == core::Errc::not_found) return core::make_error(core::Errc::invalid_argument, "image not found: " + image);
  if (e.code == core::Errc::invalid_argument) return core::make_error(core::Errc::invalid_argument, "image.uri: " + e.message);
  return e;
}

}  // namespace

core::Result<DockerBackend> DockerBackend::open(DockerBackendConfig config) {
  namespace fs = std::filesystem;
  if (config.bundle_dir.empty() || config.bundle_dir.front() != '/') {
    return core::make_error(core::Errc::invalid_argument,
                            "docker backend: the execd bundle directory must be an absolute path (make bundle): '" +
                                config.bundle_dir + "'");
  }
  for (const char* part : {"bin/execd", "start.sh", "busybox", "ld-linux-x86-64.so.2"}) {
    std::error_code ec;
    if (!fs::exists(fs::path(config.bundle_dir) / part, ec)) {
      return core::make_error(core::Errc::invalid_argument, "docker backend: " + config.bundle_dir + " is not an execd bundle (no " +
                                                                part + "; make bundle builds one)");
    }
  }
  if (config.instance.empty()) {
    return core::make_error(core::Errc::invalid_argument, "docker backend: the gateway instance name is empty");
  }
  auto engine = DockerEngine::connect(config.docker_host);
  if (!engine) return engine.error();
  if (config.host_firewall) {
    if (auto r = DockerHostFirewall::ensure(); !r) {
      return core::make_error(core::Errc::unavailable,
                              "docker backend: cannot refuse the sandboxes' connections to this host (" +
                                  r.error().message +
                                  "); run the gateway as root beside the engine, or pass --docker-host-firewall off "
                                  "and firewall the exd+ bridges yourself");
    }
  }
  auto info = engine->info();
  if (!info) return info.error();
  if (!config.runtime.empty() &&
      std::find(info->runtimes.begin(), info->runtimes.end(), config.runtime) == info->runtimes.end()) {
    std::string known;
    for (const auto& r : info->runtimes) known += (known.empty() ? "" : ", ") + r;
    return core::make_error(core::Errc::invalid_argument, "docker backend: runtime '" + config.runtime +
                                                              "' is not configured in the engine (it has: " + known + ")");
  }
  return DockerBackend(std::move(config), std::move(*engine), std::move(*info));
}

std::string DockerBackend::resource_name(const std::string& sandbox_id) { return "execd-" + sandbox_id; }

core::Result<void> DockerBackend::validate(const SandboxSpec& spec) const {
  if (auto limits = check_limits(spec); !limits) return limits;
  auto image = engine_.inspect_image(spec.image);
  if (!image) return image_error(image.error(), spec.image);
  return {};
}

core::Result<void> DockerBackend::check_limits(const SandboxSpec& spec) const {
  const auto& l = spec.limits;
  if (l.memory_bytes > 0 && l.memory_bytes < kMinMemoryBytes) {
    return core::make_error(core::Errc::invalid_argument,
                            "resourceLimits.memory: docker needs at least " + mib(kMinMemoryBytes));
  }
  if (l.memory_bytes > engine_info_.mem_total && engine_info_.mem_total > 0) {
    return core::make_error(core::Errc::invalid_argument, "resourceLimits.memory: " + mib(l.memory_bytes) +
                                                              " is more than the engine's " + mib(engine_info_.mem_total));
  }
  if (l.cpu_millis > 0 && l.cpu_millis < kMinCpuMillis) {
    return core::make_error(core::Errc::invalid_argument, "resourceLimits.cpu: docker needs at least 10m");
  }
  if (engine_info_.ncpu > 0 && l.cpu_millis > static_cast<uint32_t>(engine_info_.ncpu) * 1000u) {
    return core::make_error(core::Errc::invalid_argument, "resourceLimits.cpu: " + std::to_string(l.cpu_millis) +
                                                              "m is more than the engine's " +
                                                              std::to_string(engine_info_.ncpu) + " cores");
  }
  if (l.disk_bytes > 0) {
    // overlay2 caps a container's writable layer only on xfs with project quotas.
    return core::make_error(core::Errc::invalid_argument, "resourceLimits: the docker backend cannot cap disk use");
  }
  for (const auto& [key, _] : spec.env) {
    if (key.empty() || key.find('=') != std::string::npos) {
      return core::make_error(core::Errc::invalid_argument, "env: '" + key + "' is not a variable name");
    }
  }
  return {};
}

core::Result<void> DockerBackend::has_room(const SandboxSpec& spec) const {
  auto containers = engine_.list_containers({std::string(kGatewayLabel) + "=" + config_.instance});
  if (!containers) return containers.error();
  uint32_t live = 0;
  uint64_t promised = 0;
  for (const auto& c : *containers) {
    if (!is_live_state(c.state)) continue;
    ++live;
    if (auto it = c.labels.find(kMemoryLabel); it != c.labels.end()) {
      promised += std::strtoull(it->second.c_str(), nullptr, 10);
    }
  }
  if (config_.max_containers > 0 && live >= config_.max_containers) {
    return core::make_error(core::Errc::unavailable, "containers: " + std::to_string(live) + " of " +
                                                         std::to_string(config_.max_containers) + " in use");
  }
  if (engine_info_.mem_total > 0 && promised + spec.limits.memory_bytes > engine_info_.mem_total) {
    return core::make_error(core::Errc::unavailable, "memory: " + mib(spec.limits.memory_bytes) + " asked, " +
                                                         mib(promised) + " of the engine's " +
                                                         mib(engine_info_.mem_total) + " already promised");
  }
  return {};
}

core::Result<Placement> DockerBackend::create(const std::string& sandbox_id, const SandboxSpec& spec,
                                              const std::string& access_token) {
  if (sandbox_id.empty() || !std::all_of(sandbox_id.begin(), sandbox_id.end(), [](unsigned char c) {
        return std::isalnum(c) != 0 || c == '-' || c == '_' || c == '.';
      })) {
    return core::make_error(core::Errc::invalid_argument, "sandbox id '" + sandbox_id + "' cannot name a container");
  }
  if (auto v = check_limits(spec); !v) return v.error();
  auto image = engine_.inspect_image(spec.image);
  if (!image) return image_error(image.error(), spec.image).error();

  const std::string name = resource_name(sandbox_id);
  // Whatever a crashed earlier attempt left under this name is this sandbox's own.
  if (auto r = remove_named(name); !r) return r.error();

  const std::map<std::string, std::string> labels{
      {kSandboxLabel, sandbox_id},
      {kGatewayLabel, config_.instance},
      {kMemoryLabel, std::to_string(spec.limits.memory_bytes)},
  };
  if (auto net = engine_.create_network(name, labels, DockerHostFirewall::sandbox_bridge_name(sandbox_id)); !net) {
    return net.error();
  }

  ContainerSpec c;
  c.name = name;
  c.image = spec.image;
  const std::string mount = kBundleMount;
  c.entrypoint = {mount + "/busybox", "sh", mount + "/start.sh"};
  c.cmd = {std::to_string(config_.execd_port), access_token};
  // The spec's entrypoint, else the image's own, runs beside execd.
  if (!spec.entrypoint.empty()) {
    c.cmd.insert(c.cmd.end(), spec.entrypoint.begin(), spec.entrypoint.end());
  } else {
    c.cmd.insert(c.cmd.end(), image->entrypoint.begin(), image->entrypoint.end());
    c.cmd.insert(c.cmd.end(), image->cmd.begin(), image->cmd.end());
  }
  for (const auto& [k, v] : spec.env) c.env.push_back(k + "=" + v);
  c.labels = labels;
  c.binds = {config_.bundle_dir + ":" + mount + ":ro"};
  c.network = name;
  c.runtime = config_.runtime;
  c.memory_bytes = spec.limits.memory_bytes;
  c.nano_cpus = static_cast<uint64_t>(spec.limits.cpu_millis) * 1'000'000ull;
  c.pids_limit = spec.limits.max_pids;

  auto fail = [&](core::Error e) -> core::Result<Placement> {
    if (auto r = remove_named(name); !r) spdlog::warn("docker backend: cleaning up {}: {}", name, r.error().message);
    return e;
  };
  auto id = engine_.create_container(c);
  if (!id) return fail(id.error());
  if (auto r = engine_.start_container(*id); !r) return fail(r.error());
  auto info = engine_.inspect_container(*id);
  if (!info) return fail(info.error());
  if (!info->state.running) {
    return fail(core::make_error(core::Errc::unavailable, "container " + name + " stopped at once: " + exit_message(info->state)));
  }
  const auto ip = info->network_ips.find(name);
  if (ip == info->network_ips.end() || ip->second.empty()) {
    return fail(core::make_error(core::Errc::unavailable, "container " + name + " has no address on network " + name));
  }
  return Placement{name, ip->second, config_.execd_port};
}

core::Result<InstanceStatus> DockerBackend::inspect(const Placement& placement) {
  auto info = engine_.inspect_container(placement.handle);
  if (!info) {
    if (info.error().code == core::Errc::not_found) return InstanceStatus{InstanceStatus::Phase::gone, "container is gone"};
    return info.error();
  }
  InstanceStatus status;
  status.phase = phase_of(info->state.status, info->state.paused);
  if (status.phase == InstanceStatus::Phase::exited) {
    status.message = exit_message(info->state);
  } else if (info->state.oom_killed) {
    // A process other than the entrypoint hit the limit; the container lives on.
    status.message = "a process was OOM killed (memory limit)";
  }
  return status;
}

core::Result<void> DockerBackend::pause(const Placement& placement) { return engine_.pause_container(placement.handle); }

core::Result<void> DockerBackend::resume(const Placement& placement) {
  return engine_.unpause_container(placement.handle);
}

core::Result<void> DockerBackend::remove(const Placement& placement) { return remove_named(placement.handle); }

core::Result<void> DockerBackend::remove_named(const std::string& name) const {
  if (auto r = engine_.remove_container(name); !r && r.error().code != core::Errc::not_found) return r;
  if (auto r = engine_.remove_network(name); !r && r.error().code != core::Errc::not_found) return r;
  return {};
}

core::Result<std::vector<Instance>> DockerBackend::list() {
  auto containers = engine_.list_containers({std::string(kGatewayLabel) + "=" + config_.instance});
  if (!containers) return containers.error();
  std::vector<Instance> out;
  for (const auto& c : *containers) {
    const auto sandbox = c.labels.find(kSandboxLabel);
    if (sandbox == c.labels.end() || c.names.empty()) continue;
    Instance in;
    in.sandbox_id = sandbox->second;
    in.placement.handle = c.names.front();
    in.placement.port = config_.execd_port;
    if (auto ip = c.network_ips.find(in.placement.handle); ip != c.network_ips.end()) in.placement.host = ip->second;
    in.status.phase = phase_of(c.state, false);
    if (in.status.phase == InstanceStatus::Phase::exited) in.status.message = c.status;
    out.push_back(std::move(in));
  }
  return out;
}

}  // namespace execd::gateway
