#pragma once

#include <memory>
#include <string>

#include "http/http_server.hpp"

namespace execd::gateway {
class SandboxService;
}

namespace execd::gateway::api {

/// What GET /v1/sandboxes/{id}/endpoints/{port} answers.
struct EndpointOptions {
  bool is_proxy_mode = false;  ///< true: this gateway's proxy URL; false: the sandbox's own address
  std::string public_url;      ///< proxy mode's base, e.g. "http://gw:8080" (no trailing '/'); empty: http://<Host header>
};

/// The Lifecycle API's sandbox routes under /v1 (the snapshot routes answer 501
/// NOT_SUPPORTED): parse, call the service, render (sandbox_json.hpp).
void register_sandbox_routes(http::HttpServer& server, std::shared_ptr<SandboxService> service,
                             EndpointOptions endpoints);

}  // namespace execd::gateway::api
