#include "gateway/gateway_app.hpp"

#include <unistd.h>

#include <filesystem>

#include <spdlog/spdlog.h>

#include "core/program.hpp"
#include "gateway/api/health_routes.hpp"
#include "gateway/api/metrics_routes.hpp"
#include "gateway/api/proxy_routes.hpp"
#include "gateway/api/replica_router.hpp"
#include "gateway/api/sandbox_routes.hpp"
#include "gateway/backends/docker_backend.hpp"
#include "gateway/backends/kubernetes_backend.hpp"
#include "gateway/backends/process_backend.hpp"
#include "gateway/backends/remote_backend.hpp"
#include "gateway/sandbox_service.hpp"
#include "gateway/sandbox_store.hpp"
#include "http/http_server.hpp"

namespace execd::gateway {
namespace {

using core::Errc;
using core::make_error;

std::string default_state_dir() {
  const char* tmp = std::getenv("TMPDIR");
  return std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/execd-gateway-" + std::to_string(getuid());
}

// `execd` beside this program's own binary (build/execd next to build/execd-gateway).
std::string default_execd_bin() {
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "execd";
  return (self.parent_path() / "execd").string();
}

core::Result<std::shared_ptr<Backend>> make_backend(const GatewayConfig& c, const std::string& state_dir) {
  if (c.backend == "process") {
    ProcessBackend::Options o;
    o.execd_binary = c.execd_bin.empty() ? default_execd_bin() : c.execd_bin;
    o.state_dir = state_dir + "/sandboxes";
    o.rootfs_dir = c.rootfs_dir;
    o.start_timeout = c.sandbox_start_timeout;
    auto backend = ProcessBackend::open(std::move(o));
    if (!backend) return backend.error();
    return std::shared_ptr<Backend>(std::move(*backend));
  }
  if (c.backend == "docker") {
    DockerBackendConfig d;
    d.docker_host = c.docker_host;
    d.runtime = c.docker_runtime;
    d.host_firewall = c.docker_host_firewall == "on";
    // By default `make bundle`'s output beside this binary (build/bundle next to build/execd-gateway).
    std::error_code ec;
    const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    d.bundle_dir = !c.execd_bundle.empty() ? c.execd_bundle : ec ? "" : (self.parent_path() / "bundle").string();
    // The engine's containers belong to this gateway's table: name the instance after
    // where the table lives, so a restart (same table) finds them and another gateway
    // on the same engine does not (FNV-1a, stable across builds).
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char ch : state_dir + "|" + c.state_path) h = (h ^ ch) * 1099511628211ull;
    d.instance = "gw-";
    for (int shift = 60; shift >= 0; shift -= 4) d.instance += "0123456789abcdef"[(h >> shift) & 0xf];
    auto backend = DockerBackend::open(std::move(d));
    if (!backend) return backend.error();
    return std::shared_ptr<Backend>(std::make_shared<DockerBackend>(std::move(*backend)));
  }
  if (c.backend == "kubernetes") {
    KubernetesBackendConfig k;
    auto api = c.kubeconfig.empty() ? in_cluster_config(core::environment_map(), "/var/run/secrets/kubernetes.io/serviceaccount")
                                    : load_kubeconfig(c.kubeconfig);
    if (!api) return api.error();
    k.api = std::move(*api);
    k.pod.namespace_name = c.k8s_namespace;
    // As the docker backend's: a restart on the same table finds its own pods again.
    k.pod.gateway_instance = c.k8s_instance;
    if (k.pod.gateway_instance.empty()) {
      uint64_t h = 1469598103934665603ull;
      for (const unsigned char ch : state_dir + "|" + c.state_path) h = (h ^ ch) * 1099511628211ull;
      k.pod.gateway_instance = "gw-";
      for (int shift = 60; shift >= 0; shift -= 4) k.pod.gateway_instance += "0123456789abcdef"[(h >> shift) & 0xf];
    }
    k.pod.bundle_image = c.k8s_bundle_image;
    k.pod.runtime_class = c.k8s_runtime_class;
    k.pod.run_as_user = c.k8s_run_as_user;
    k.pod_template_path = c.k8s_pod_template;
    k.thresholds = {static_cast<double>(c.k8s_max_cpu_pct), static_cast<double>(c.k8s_max_memory_pct),
                    static_cast<double>(c.k8s_max_pods_pct)};
    k.ready_timeout = c.k8s_ready_timeout;
    auto backend = KubernetesBackend::open(std::move(k));
    if (!backend) return backend.error();
    return std::shared_ptr<Backend>(std::move(*backend));
  }
  return make_error(Errc::invalid_argument, "backend '" + c.backend + "' is not built into this gateway");
}

}  // namespace

GatewayApp::GatewayApp(GatewayConfig config) : config_(std::move(config)) {}

GatewayApp::~GatewayApp() { stop(); }

core::Result<int> GatewayApp::start() {
  const std::string state_dir = config_.state_dir.empty() ? default_state_dir() : config_.state_dir;
  std::error_code ec;
  std::filesystem::create_directories(state_dir, ec);
  if (ec) return make_error(Errc::unavailable, "cannot create the state directory " + state_dir + ": " + ec.message());
  const std::string state_path = config_.state_path.empty() ? state_dir + "/gateway.db" : config_.state_path;
  auto store = SandboxStore::open(state_path);
  if (!store) return store.error();
  auto backend = make_backend(config_, state_dir);
  if (!backend) return backend.error();
  backend_ = std::move(*backend);

  ServiceOptions so;
  so.max_sandboxes = config_.max_sandboxes;
  so.start_timeout = config_.sandbox_start_timeout;
  so.terminated_retention = config_.terminated_retention;
  so.remove_give_up = config_.remove_give_up;
  so.pools = config_.pools;
  so.replica_id = config_.replica_id;
  so.advertise_url = config_.advertise_url;
  so.replica_expiry_scan = config_.replica_expiry_scan;
  if (!config_.remote_url.empty()) {
    RemoteBackend::Options ro;
    ro.url = config_.remote_url;
    ro.api_key = config_.remote_api_key;
    auto remote = RemoteBackend::open(std::move(ro));
    if (!remote) return remote.error();
    so.overflow = std::shared_ptr<RemoteBackend>(std::move(*remote));
    spdlog::info("overflow peer gateway {}", config_.remote_url);
  }
  service_ = std::make_shared<SandboxService>(backend_, std::move(*store), so);
  if (auto r = service_->start(); !r) return r.error();
  spdlog::info("sandbox table {} ({} backend)", state_path, backend_->name());

  http::ServerOptions o;
  o.host = config_.host;
  o.port = config_.port;
  o.access_token = config_.api_key;
  o.auth_header = "OPEN-SANDBOX-API-KEY";
  server_ = std::make_unique<http::HttpServer>(o);

  api::EndpointOptions endpoints;
  endpoints.is_proxy_mode = config_.endpoint_mode == "proxy";
  endpoints.public_url = config_.public_url;
  auto router = std::make_shared<const api::ReplicaRouter>(service_, config_.replica_id, config_.api_key);
  api::register_sandbox_routes(*server_, service_, endpoints, router);
  api::register_health_routes(*server_, service_);
  proxy_ = api::register_proxy_routes(*server_, service_, router);

  api::register_metrics_routes(*server_, service_, proxy_);

  auto port = server_->bind();
  if (!port) return port.error();
  return port;
}

void GatewayApp::run() {
  if (server_) server_->run();
}

void GatewayApp::stop() {
  if (server_) server_->stop();
  if (service_) service_->stop();
}

}  // namespace execd::gateway
