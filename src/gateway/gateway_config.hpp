#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "gateway/sandbox_service.hpp"

namespace execd::gateway {

/// Everything execd-gateway can be told at start-up (flags with environment fallbacks,
/// through core/flag_table.hpp as execd's Config). Built once in main.
struct GatewayConfig {
  std::string host = "127.0.0.1";
  int port = 8080;                 ///< the Lifecycle API's own default; 0 picks a free one
  std::string port_file;           ///< non-empty: the bound port is written here once listening
  std::string api_key;             ///< OPEN-SANDBOX-API-KEY clients must send; empty: no auth
  std::string backend = "process"; ///< process | docker | kubernetes
  std::string state_path;          ///< the SQLite file; empty: <state-dir>/gateway.db
  std::string state_dir;           ///< sandboxes' directories (process backend); empty: $TMPDIR/execd-gateway-<uid>
  size_t max_sandboxes = 0;        ///< 0: no cap of the gateway's own
  std::string rootfs_dir;          ///< image.uri names a directory under it (process backend)
  std::vector<PoolSpec> pools;     ///< --pool IMAGE=N, repeatable
  std::string docker_host = "unix:///var/run/docker.sock";
  std::string docker_runtime;      ///< e.g. runsc; empty: the engine's default
  std::string docker_host_firewall = "on";  ///< on | off: DockerHostFirewall's rule at start
  // kubernetes backend (docs/KUBERNETES.md)
  std::string kubeconfig;          ///< empty: in-cluster service account
  std::string k8s_namespace;       ///< empty: the kubeconfig context's, or the gateway pod's own
  std::string k8s_instance;        ///< label execd.io/gateway; empty: derived from where the table lives
  std::string k8s_bundle_image = "execd-bundle:latest";
  std::string k8s_runtime_class;   ///< e.g. gvisor; empty: the cluster's default
  std::string k8s_pod_template;    ///< a Pod whose placement fields every sandbox pod copies
  uint32_t k8s_run_as_user = 1000;
  uint32_t k8s_max_cpu_pct = 80;   ///< the watermark, in percent of Ready nodes' allocatable
  uint32_t k8s_max_memory_pct = 80;
  uint32_t k8s_max_pods_pct = 90;
  std::chrono::milliseconds k8s_ready_timeout{std::chrono::minutes(2)};
  std::string execd_bundle;        ///< docker: `make bundle`'s directory; empty: bundle/ beside the gateway binary
  std::string execd_bin;           ///< empty: `execd` beside the gateway binary
  std::string endpoint_mode = "direct";  ///< direct | proxy: what endpoints/{port} answers
  std::string public_url;          ///< proxy mode's base URL; empty: http://<the Host header clients sent>
  std::string remote_url;          ///< overflow peer gateway (http://host:port); empty: none
  std::string remote_api_key;      ///< the peer's OPEN-SANDBOX-API-KEY
  std::string replica_id;          ///< this replica's name among several behind one balancer; empty: alone
  std::string advertise_url;       ///< where other replicas reach this one (http://host:port)
  std::chrono::milliseconds replica_expiry_scan{5000};  ///< 0: never take a silent replica's expired sandboxes
  std::chrono::milliseconds sandbox_start_timeout{30000};
  std::chrono::milliseconds terminated_retention{std::chrono::hours(1)};
  std::chrono::milliseconds remove_give_up{0};  ///< 0: failed removes are retried forever
  std::chrono::milliseconds graceful_shutdown_timeout{3000};
  std::string log_level = "info";
  std::string log_file;
  bool show_help = false;
};

/// argv (without the program name) and the environment into a GatewayConfig; flag >
/// env > default. invalid_argument with one line naming the bad flag or variable.
core::Result<GatewayConfig> parse_gateway_config(const std::vector<std::string>& args,
                                                 const std::map<std::string, std::string>& env);

/// The --help text.
std::string gateway_config_help();

}  // namespace execd::gateway
