#include "gateway/api/metrics_routes.hpp"

#include <limits>

#include "gateway/sandbox_service.hpp"
#include "metrics/prometheus.hpp"

namespace execd::gateway::api {
namespace {

std::string render(const ServiceCounters& c, const http::ProxyStats& p) {
  metrics::Registry r;
  const metrics::Labels backend = {{"backend", c.backend}};
  for (const SandboxState s :
       {SandboxState::pending, SandboxState::running, SandboxState::pausing, SandboxState::paused,
        SandboxState::resuming, SandboxState::stopping, SandboxState::terminated, SandboxState::failed}) {
    const auto it = c.by_state.find(s);
    r.gauge("gateway_sandboxes", "Sandboxes listed now, by state and backend (idle pool members not included).",
            {{"state", std::string(to_string(s))}, {"backend", c.backend}})
        .set(it == c.by_state.end() ? 0 : static_cast<double>(it->second));
  }
  r.gauge("gateway_sandboxes_pooled", "Idle warm-pool sandboxes.", backend).set(static_cast<double>(c.pooled));
  r.counter("gateway_sandbox_creates_total", "Creates accepted (pool claims included).", backend)
      .inc(static_cast<double>(c.creates));
  r.counter("gateway_sandbox_deletes_total", "Sandboxes deleted by a user.", backend)
      .inc(static_cast<double>(c.deletes));
  r.counter("gateway_sandbox_failures_total", "Sandboxes that became Failed.", backend)
      .inc(static_cast<double>(c.failures));
  r.counter("gateway_sandbox_expirations_total", "Sandboxes reaped at their timeout.", backend)
      .inc(static_cast<double>(c.expirations));
  r.counter("gateway_sandbox_pool_claims_total", "Creates answered from the warm pool.", backend)
      .inc(static_cast<double>(c.pool_claims));
  r.counter("gateway_sandbox_remove_failures_total", "Backend removes that failed (each retry counted).", backend)
      .inc(static_cast<double>(c.remove_failures));
  r.gauge("gateway_sandboxes_remove_pending", "Sandboxes whose remains wait for a retried remove.", backend)
      .set(static_cast<double>(c.removals_pending));
  metrics::HistogramValues latency;
  latency.bounds.assign(c.kLatencyBounds.begin(), c.kLatencyBounds.end());
  latency.cumulative.assign(c.latency_buckets.begin(), c.latency_buckets.end());
  latency.cumulative.push_back(c.latency_count);
  latency.sum = c.latency_sum_seconds;
  r.histogram_callback("gateway_sandbox_create_seconds", "Create to Running, seconds.", backend,
                       [latency] { return latency; });
  r.gauge("gateway_capacity_left", "Sandboxes the backend may still create (+Inf: no cap).", backend)
      .set(c.has_cap ? static_cast<double>(c.capacity_left) : std::numeric_limits<double>::infinity());
  const auto load = [](const std::atomic<uint64_t>& a) {
    return static_cast<double>(a.load(std::memory_order_relaxed));
  };
  r.counter("gateway_proxy_requests_total", "Requests forwarded to sandboxes (WebSocket upgrades included).")
      .inc(load(p.requests));
  r.counter("gateway_proxy_upstream_failures_total", "Proxied requests answered 502 or cut by the sandbox.")
      .inc(load(p.upstream_failures));
  r.counter("gateway_proxy_bytes_total", "Body and WebSocket bytes through the proxy, by direction.",
            {{"direction", "to_sandbox"}})
      .inc(load(p.bytes_to_upstream));
  r.counter("gateway_proxy_bytes_total", "", {{"direction", "from_sandbox"}}).inc(load(p.bytes_from_upstream));
  r.gauge("gateway_proxy_websockets_open", "WebSockets relayed now.")
      .set(static_cast<double>(p.websockets_open.load(std::memory_order_relaxed)));
  return r.render();
}

}  // namespace

void register_metrics_routes(http::HttpServer& server, std::shared_ptr<SandboxService> service,
                             std::shared_ptr<const http::ReverseProxy> proxy) {
  server.route(http::HttpServer::Method::get, "/metrics",
               [service, proxy](const httplib::Request&, httplib::Response& res) {
                 res.set_content(render(service->counters(), proxy->stats()), metrics::Registry::kContentType);
               });
}

}  // namespace execd::gateway::api
