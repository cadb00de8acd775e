#pragma once

#include <memory>
#include <string>

#include "http/http_server.hpp"

namespace execd::gateway {
class SandboxService;
}

namespace execd::gateway::api {

class ReplicaRouter;

/// What GET /v1/sandboxes/{id}/endpoints/{port} answers.
struct EndpointOptions {
  bool is_proxy_mode = false;  ///< true: this gateway's proxy URL; false: the sandbox's own address
  std::string public_url;      ///< proxy mode's base, e.g. "http://gw:8080" (no trailing '/'); empty: http://<Host header>
};

/// The Lifecycle API's sandbox routes under /v1 (the snapshot routes answer 501
/// NOT_SUPPORTED): parse, call the service, render (sandbox_json.hpp). A request for a
/// sandbox another replica owns goes there first (`router`); POST /v1/sandboxes honours
/// X-Execd-Sandbox-Id (the id a gateway placing a sandbox on this one chose).
void register_sandbox_routes(http::HttpServer& server, std::shared_ptr<SandboxService> service,
                             EndpointOptions endpoints, std::shared_ptr<const ReplicaRouter> router);

}  // namespace execd::gateway::api
