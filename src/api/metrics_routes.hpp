#pragma once

#include <memory>

#include "http/http_server.hpp"
#include "metrics/metrics_sampler.hpp"

namespace execd::api {

/// GET /metrics (the latest sample, at once) and GET /metrics/watch (SSE, one event per
/// sample from the shared sampler, until the client leaves).
void register_metrics_routes(http::HttpServer& server, std::shared_ptr<metrics::MetricsSampler> sampler);

}  // namespace execd::api
