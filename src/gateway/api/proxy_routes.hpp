#pragma once

#include <memory>
#include <string>

#include "http/http_server.hpp"
#include "http/reverse_proxy.hpp"

namespace execd::gateway {
class SandboxService;
}

namespace execd::gateway::api {

class ReplicaRouter;

/// Any method on /v1/sandboxes/{id}/proxy/{port}/... is forwarded, streamed both ways
/// (http::ReverseProxy: SSE unbuffered, WebSocket upgrades), the path after the port and
/// the query as sent, to wherever the sandbox is served:
///  - here: the sandbox's execd (or its host's `port`), with its X-EXECD-ACCESS-TOKEN;
///  - on the overflow peer: the peer's own /v1/sandboxes/{peer id}/proxy/{port}/..., with
///    the peer's API key;
///  - on another replica (`router`): that replica's same route, with the API key.
/// The client's `withheld_header` (its OPEN-SANDBOX-API-KEY) is not forwarded. A port
/// outside 1-65535 is a 400; an unknown sandbox 404, one not Running 409. Answers served
/// here carry X-Gateway-Replica. Returns the proxy's counters, for the gateway's metrics.
std::shared_ptr<const http::ReverseProxy> register_proxy_routes(
    http::HttpServer& server, std::shared_ptr<SandboxService> service, std::shared_ptr<const ReplicaRouter> router,
    const std::string& withheld_header = "OPEN-SANDBOX-API-KEY");

}  // namespace execd::gateway::api
