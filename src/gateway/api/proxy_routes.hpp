#pragma once

#include <functional>
#include <memory>
#include <string>

#include "core/result.hpp"
#include "http/http_server.hpp"
#include "http/reverse_proxy.hpp"

namespace execd::gateway::api {

/// Where a sandbox's port is reached: the upstream and the headers to add (the sandbox's
/// execd access token). An error when the sandbox is unknown (not_found) or not Running
/// (conflict), naming it.
using ProxyTargetResolver = std::function<core::Result<http::ProxyTarget>(const std::string& sandbox_id, int port)>;

/// Any method on /v1/sandboxes/{id}/proxy/{port}/... is forwarded, streamed both ways
/// (http::ReverseProxy: SSE unbuffered, WebSocket upgrades), to what `resolve` returns for
/// the sandbox and port; the path after the port and the query go on as sent. The
/// client's `withheld_header` (its OPEN-SANDBOX-API-KEY) is not forwarded. A port outside
/// 1-65535 is a 400. Returns the proxy's counters, for the gateway's metrics.
std::shared_ptr<const http::ReverseProxy> register_proxy_routes(http::HttpServer& server, ProxyTargetResolver resolve,
                                                                const std::string& withheld_header = "OPEN-SANDBOX-API-KEY");

}  // namespace execd::gateway::api
