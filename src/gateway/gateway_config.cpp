#include "gateway/gateway_config.hpp"

#include "core/flag_table.hpp"

namespace execd::gateway {
namespace {

using core::Errc;
using core::FlagOption;
using core::make_error;
using Option = FlagOption<GatewayConfig>;

core::Result<void> add_one_pool(GatewayConfig& c, const std::string& v) {
  const auto eq = v.rfind('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == v.size()) {
    return make_error(Errc::invalid_argument, "expected IMAGE=N, got '" + v + "'");
  }
  auto n = core::parse_flag_uint(v.substr(eq + 1), 1000);
  if (!n || *n == 0) return make_error(Errc::invalid_argument, "pool size must be 1..1000, got '" + v.substr(eq + 1) + "'");
  const std::string image = v.substr(0, eq);
  for (auto& p : c.pools) {
    if (p.image == image) return make_error(Errc::invalid_argument, "image '" + image + "' has two --pool flags");
  }
  c.pools.push_back({image, static_cast<size_t>(*n)});
  return {};
}

// One IMAGE=N per flag; the environment variable may list several, comma-separated.
core::Result<void> add_pool(GatewayConfig& c, const std::string& v) {
  size_t start = 0;
  while (start <= v.size()) {
    const auto comma = v.find(',', start);
    const std::string item = v.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (auto r = add_one_pool(c, item); !r) return r;
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return {};
}

Option::Setter one_of(std::string GatewayConfig::*field, std::vector<std::string> allowed) {
  return [field, allowed](GatewayConfig& c, const std::string& v) -> core::Result<void> {
    std::string list;
    for (const auto& a : allowed) {
      if (v == a) {
        c.*field = v;
        return {};
      }
      list += (list.empty() ? "" : ", ") + a;
    }
    return make_error(Errc::invalid_argument, "unknown value '" + v + "' (use " + list + ")");
  };
}

const std::vector<Option>& options() {
  static const std::vector<Option> kOptions = {
      {"host", "EXECD_GATEWAY_HOST", "ADDR", "address to listen on (default 127.0.0.1)",
       core::flag_string(&GatewayConfig::host)},
      {"port", "EXECD_GATEWAY_PORT", "N", "TCP port (default 8080; 0 picks a free one and logs it)",
       core::flag_port(&GatewayConfig::port)},
      {"port-file", "EXECD_GATEWAY_PORT_FILE", "PATH", "once listening, write the bound port here",
       core::flag_string(&GatewayConfig::port_file)},
      {"api-key", "EXECD_GATEWAY_API_KEY", "KEY",
       "require header OPEN-SANDBOX-API-KEY on every /v1 route (default: none)",
       core::flag_string(&GatewayConfig::api_key)},
      {"backend", "EXECD_GATEWAY_BACKEND", "NAME", "engine that runs sandboxes: process|docker|kubernetes (default process)",
       one_of(&GatewayConfig::backend, {"process", "docker", "kubernetes"})},
      {"state", "EXECD_GATEWAY_STATE", "PATH", "the sandbox table's SQLite file (default <state-dir>/gateway.db)",
       core::flag_string(&GatewayConfig::state_path)},
      {"state-dir", "EXECD_GATEWAY_STATE_DIR", "DIR",
       "where the process backend keeps each sandbox's directory (default $TMPDIR/execd-gateway-<uid>)",
       core::flag_string(&GatewayConfig::state_dir)},
      {"max-sandboxes", "EXECD_GATEWAY_MAX_SANDBOXES", "N",
       "live sandboxes at most, warm pool included; past it creates are 503 CAPACITY (default 0: no cap)",
       core::flag_count(&GatewayConfig::max_sandboxes, 0, 1000000)},
      {"rootfs-dir", "EXECD_GATEWAY_ROOTFS_DIR", "DIR",
       "process backend: image.uri names a root filesystem directory under DIR ('host' always works)",
       core::flag_string(&GatewayConfig::rootfs_dir)},
      {"pool", "EXECD_GATEWAY_POOL", "IMAGE=N",
       "keep N idle sandboxes of IMAGE started; a create of just that image claims one (repeatable)", add_pool},
      {"docker-host", "DOCKER_HOST", "URL", "docker backend: the engine's socket (default unix:///var/run/docker.sock)",
       core::flag_string(&GatewayConfig::docker_host)},
      {"docker-runtime", "EXECD_GATEWAY_DOCKER_RUNTIME", "NAME", "docker backend: OCI runtime, e.g. runsc (default: the engine's)",
       core::flag_string(&GatewayConfig::docker_runtime)},
      {"docker-host-firewall", "EXECD_GATEWAY_DOCKER_HOST_FIREWALL", "on|off",
       "docker backend: refuse new connections from sandbox bridges (exd+) to this host with one iptables rule "
       "(default on; off: firewall the host yourself)",
       one_of(&GatewayConfig::docker_host_firewall, {"on", "off"})},
      {"kubeconfig", "KUBECONFIG", "PATH",
       "kubernetes backend: the kubeconfig whose current context names the cluster (default: the in-cluster service account)",
       core::flag_string(&GatewayConfig::kubeconfig)},
      {"k8s-namespace", "EXECD_GATEWAY_K8S_NAMESPACE", "NS",
       "kubernetes backend: namespace of the sandbox pods (default: the context's, or the gateway pod's own)",
       core::flag_string(&GatewayConfig::k8s_namespace)},
      {"k8s-instance", "EXECD_GATEWAY_K8S_INSTANCE", "NAME",
       "kubernetes backend: this gateway's label on its pods (default: derived from where its table lives)",
       core::flag_string(&GatewayConfig::k8s_instance)},
      {"k8s-bundle-image", "EXECD_GATEWAY_K8S_BUNDLE_IMAGE", "IMAGE",
       "kubernetes backend: image with the execd bundle at /opt/execd, copied in by an init container "
       "(default execd-bundle:latest)",
       core::flag_string(&GatewayConfig::k8s_bundle_image)},
      {"k8s-runtime-class", "EXECD_GATEWAY_K8S_RUNTIME_CLASS", "NAME",
       "kubernetes backend: runtimeClassName of sandbox pods, e.g. gvisor (default: the cluster's)",
       core::flag_string(&GatewayConfig::k8s_runtime_class)},
      {"k8s-pod-template", "EXECD_GATEWAY_K8S_POD_TEMPLATE", "PATH",
       "kubernetes backend: a Pod (YAML/JSON) whose labels, annotations, nodeSelector, tolerations, affinity, "
       "priorityClassName, imagePullSecrets and DNS settings every sandbox pod copies",
       core::flag_string(&GatewayConfig::k8s_pod_template)},
      {"k8s-run-as-user", "EXECD_GATEWAY_K8S_RUN_AS_USER", "UID",
       "kubernetes backend: uid of sandbox processes; 0 runs them as root (default 1000)",
       core::flag_count(&GatewayConfig::k8s_run_as_user, 0, 2147483647)},
      {"k8s-max-cpu-pct", "EXECD_GATEWAY_K8S_MAX_CPU_PCT", "N",
       "kubernetes backend: no new sandbox once cpu requested (or used) would pass N% of Ready nodes' allocatable (default 80)",
       core::flag_count(&GatewayConfig::k8s_max_cpu_pct, 1, 100)},
      {"k8s-max-memory-pct", "EXECD_GATEWAY_K8S_MAX_MEMORY_PCT", "N",
       "kubernetes backend: the same for memory (default 80)", core::flag_count(&GatewayConfig::k8s_max_memory_pct, 1, 100)},
      {"k8s-max-pods-pct", "EXECD_GATEWAY_K8S_MAX_PODS_PCT", "N",
       "kubernetes backend: the same for the pod count (default 90)", core::flag_count(&GatewayConfig::k8s_max_pods_pct, 1, 100)},
      {"k8s-ready-timeout", "EXECD_GATEWAY_K8S_READY_TIMEOUT", "DUR",
       "kubernetes backend: how long a new pod may take to be Ready, image pull included (default 2m)",
       core::flag_duration(&GatewayConfig::k8s_ready_timeout)},
      {"execd-bundle", "EXECD_GATEWAY_EXECD_BUNDLE", "DIR",
       "docker backend: the self-contained execd (`make bundle`) mounted into every container (default: bundle/ beside this binary)",
       core::flag_string(&GatewayConfig::execd_bundle)},
      {"execd-bin", "EXECD_GATEWAY_EXECD_BIN", "PATH", "the execd each sandbox runs (default: execd beside this binary)",
       core::flag_string(&GatewayConfig::execd_bin)},
      {"endpoint-mode", "EXECD_GATEWAY_ENDPOINT_MODE", "MODE",
       "what GET /v1/sandboxes/{id}/endpoints/{port} answers: direct (the sandbox's own address) or proxy "
       "(this gateway's /v1/sandboxes/{id}/proxy/{port}) (default direct)",
       one_of(&GatewayConfig::endpoint_mode, {"direct", "proxy"})},
      {"public-url", "EXECD_GATEWAY_PUBLIC_URL", "URL",
       "base URL clients reach this gateway at, for proxy endpoints (default: http:// and the request's Host header)",
       core::flag_string(&GatewayConfig::public_url)},
      {"remote", "EXECD_GATEWAY_REMOTE", "URL",
       "a peer execd-gateway (http://host:port) that new sandboxes overflow to when this one is full "
       "(--max-sandboxes or the backend's room); it then owns them and this gateway forwards to it (default: none)",
       core::flag_string(&GatewayConfig::remote_url)},
      {"remote-api-key", "EXECD_GATEWAY_REMOTE_API_KEY", "KEY", "the --remote peer's OPEN-SANDBOX-API-KEY",
       core::flag_string(&GatewayConfig::remote_api_key)},
      {"replica-id", "EXECD_GATEWAY_REPLICA_ID", "NAME",
       "this gateway's name among replicas sharing one engine (stored with each sandbox it owns, sent as "
       "X-Gateway-Replica); needs --advertise-url (default: none, a gateway alone)",
       core::flag_string(&GatewayConfig::replica_id)},
      {"advertise-url", "EXECD_GATEWAY_ADVERTISE_URL", "URL",
       "where the other replicas reach this one (http://host:port), stored with each sandbox it owns",
       core::flag_string(&GatewayConfig::advertise_url)},
      {"replica-expiry-scan", "EXECD_GATEWAY_REPLICA_EXPIRY_SCAN", "DUR",
       "with --replica-id: how often to look in the engine for other replicas' sandboxes past their expiry whose "
       "replica does not answer, and adopt them so they are expired here (default 5s; 0: never)",
       core::flag_duration(&GatewayConfig::replica_expiry_scan)},
      {"sandbox-start-timeout", "EXECD_GATEWAY_SANDBOX_START_TIMEOUT", "DUR",
       "a sandbox whose execd does not answer /ping by then is Failed (default 30s)",
       core::flag_duration(&GatewayConfig::sandbox_start_timeout)},
      {"terminated-retention", "EXECD_GATEWAY_TERMINATED_RETENTION", "DUR",
       "how long Terminated and Failed sandboxes stay listed (default 1h)",
       core::flag_duration(&GatewayConfig::terminated_retention)},
      {"remove-give-up", "EXECD_GATEWAY_REMOVE_GIVE_UP", "DUR",
       "a sandbox the engine fails to remove (Failed, remove_failed) is retried after 1 s, doubling to every 60 s; "
       "stop retrying this long after the first failure (default 0: never stop; a DELETE always tries again)",
       core::flag_duration(&GatewayConfig::remove_give_up)},
      {"graceful-shutdown-timeout", "EXECD_GATEWAY_GRACE_SHUTDOWN", "DUR",
       "time open streams get to end on SIGTERM (default 3s)",
       core::flag_duration(&GatewayConfig::graceful_shutdown_timeout)},
      {"log-level", "EXECD_GATEWAY_LOG_LEVEL", "LEVEL", "trace|debug|info|warn|error|critical|off (default info)",
       core::flag_log_level(&GatewayConfig::log_level)},
      {"log-file", "EXECD_GATEWAY_LOG_FILE", "PATH", "log to this file instead of stderr",
       core::flag_string(&GatewayConfig::log_file)},
  };
  return kOptions;
}

}  // namespace

core::Result<GatewayConfig> parse_gateway_config(const std::vector<std::string>& args,
                                                 const std::map<std::string, std::string>& env) {
  auto c = core::parse_flags(options(), args, env);
  if (!c) return c;
  if (c->sandbox_start_timeout.count() <= 0) {
    return make_error(Errc::invalid_argument, "--sandbox-start-timeout must be more than 0");
  }
  if (!c->public_url.empty() && c->public_url.rfind("http://", 0) != 0 && c->public_url.rfind("https://", 0) != 0) {
    return make_error(Errc::invalid_argument, "--public-url must start with http:// or https://, got '" + c->public_url + "'");
  }
  while (!c->public_url.empty() && c->public_url.back() == '/') c->public_url.pop_back();
  for (auto* url : {&c->remote_url, &c->advertise_url}) {
    while (!url->empty() && url->back() == '/') url->pop_back();
  }
  if (!c->remote_url.empty() && c->remote_url.rfind("http://", 0) != 0) {
    return make_error(Errc::invalid_argument, "--remote must be http://host:port, got '" + c->remote_url + "'");
  }
  if (c->replica_id.empty() != c->advertise_url.empty()) {
    return make_error(Errc::invalid_argument, "--replica-id and --advertise-url go together (each replica needs both)");
  }
  if (!c->advertise_url.empty() && c->advertise_url.rfind("http://", 0) != 0) {
    return make_error(Errc::invalid_argument, "--advertise-url must be http://host:port, got '" + c->advertise_url + "'");
  }
  if (!c->replica_id.empty() &&
      c->replica_id.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
          std::string::npos) {
    return make_error(Errc::invalid_argument, "--replica-id must be [A-Za-z0-9._-], got '" + c->replica_id + "'");
  }
  return c;
}

std::string gateway_config_help() {
  return core::flags_help(options(),
                          "usage: execd-gateway [flags]\n\nCreates, routes to and reaps execd sandboxes: the OpenSandbox "
                          "Lifecycle API under /v1.\n");
}

}  // namespace execd::gateway
