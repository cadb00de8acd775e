#pragma once

#include <memory>
#include <string>

#include "http/http_server.hpp"
#include "http/reverse_proxy.hpp"
#include "metrics/prometheus.hpp"

namespace execd::api {

/// Any method on /proxy/{port} and /proxy/{port}/{path} is forwarded to
/// 127.0.0.1:{port} (a web server the user started inside the sandbox) by http::ReverseProxy:
/// bodies streamed both ways, SSE and chunked responses unbuffered, WebSocket upgrades
/// relayed, hop-by-hop headers dropped, 502 JSON when nobody listens. The path after the
/// port and the query go on as sent; the upstream gets `X-Forwarded-Prefix: /proxy/{port}`.
///
/// The daemon's access token never reaches the upstream: `auth_header` is withheld, and so
/// are the `execd` / `execd.token.<token>` WebSocket subprotocols a browser offers instead
/// of the header (the rest of Sec-WebSocket-Protocol goes on).
///
/// Refused (JSON errors): a port that is not a number in 1-65535 (400 INVALID_REQUEST_BODY)
/// and the daemon's own port, the one the request came in on (403 FORBIDDEN: a request
/// would proxy to itself). Returns the proxy, whose counters go to the metrics.
std::shared_ptr<const http::ReverseProxy> register_port_proxy_routes(http::HttpServer& server,
                                                                     const std::string& auth_header);

/// execd_port_proxy_* series (requests, upstream failures, bytes by direction, WebSockets
/// open) read from `proxy`'s counters at each scrape.
void add_port_proxy_metrics(metrics::Registry& registry, std::shared_ptr<const http::ReverseProxy> proxy);

}  // namespace execd::api
