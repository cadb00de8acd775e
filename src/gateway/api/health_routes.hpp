#pragma once

#include <memory>

#include "http/http_server.hpp"

namespace execd::gateway {
class SandboxService;
}

namespace execd::gateway::api {

/// GET /health: 200 `{"status":"ok","backend":NAME,"sandboxes":{state:count}}` once the
/// service has started (so a probe also sees the table was read). Authenticated like every
/// route (HttpServer checks the API key on all of them): probes send the key.
void register_health_routes(http::HttpServer& server, std::shared_ptr<SandboxService> service);

}  // namespace execd::gateway::api
