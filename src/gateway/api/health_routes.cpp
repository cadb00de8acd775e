#include "gateway/api/health_routes.hpp"

#include "gateway/sandbox_service.hpp"
#include "http/json_io.hpp"

namespace execd::gateway::api {

void register_health_routes(http::HttpServer& server, std::shared_ptr<SandboxService> service) {
  server.route(http::HttpServer::Method::get, "/health", [service](const httplib::Request&, httplib::Response& res) {
    const ServiceCounters c = service->counters();
    nlohmann::json states = nlohmann::json::object();
    for (const auto& [state, n] : c.by_state) states[std::string(to_string(state))] = n;
    nlohmann::json body = {{"status", "ok"}, {"backend", c.backend}, {"sandboxes", std::move(states)},
                           {"pooled", c.pooled}};
    if (c.has_cap) body["capacityLeft"] = c.capacity_left;
    http::write_json(res, body);
  });
}

}  // namespace execd::gateway::api
