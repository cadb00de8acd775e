#pragma once

#include <memory>

#include "http/http_server.hpp"
#include "metrics/metrics_sampler.hpp"
#include "metrics/prometheus.hpp"

namespace execd::api {

/// GET /metrics (the latest sample as JSON, at once; `?format=prometheus`: `prometheus`
/// rendered in the Prometheus text format) and GET /metrics/watch (SSE, one event per
/// sample from the shared sampler, until the client leaves).
void register_metrics_routes(http::HttpServer& server, std::shared_ptr<metrics::MetricsSampler> sampler,
                             std::shared_ptr<const metrics::Registry> prometheus);

}  // namespace execd::api
