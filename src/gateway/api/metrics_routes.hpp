#pragma once

#include <memory>

#include "http/http_server.hpp"
#include "http/reverse_proxy.hpp"

namespace execd::gateway {
class SandboxService;
}

namespace execd::gateway::api {

/// GET /metrics: the gateway's Prometheus text (format 0.0.4), rendered per scrape from
/// one ServiceCounters snapshot and the proxy's counters: sandboxes by state and backend,
/// idle pool members, creates/deletes/failures/expirations/pool claims, the create ->
/// Running latency histogram, capacity left per backend (+Inf without --max-sandboxes),
/// proxied requests, upstream failures, bytes each way and open WebSockets.
void register_metrics_routes(http::HttpServer& server, std::shared_ptr<SandboxService> service,
                             std::shared_ptr<const http::ReverseProxy> proxy);

}  // namespace execd::gateway::api
