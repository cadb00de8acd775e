#include "gateway/api/proxy_routes.hpp"

#include <charconv>

#include "gateway/api/replica_router.hpp"
#include "gateway/sandbox_service.hpp"
#include "http/json_io.hpp"

namespace execd::gateway::api {
namespace {

/// Where one proxied request goes, and whether this replica is the one answering.
struct Resolved {
  http::ProxyTarget target;
  std::string upstream_target;
  bool is_served_here = true;
};

core::Result<Resolved> resolve(SandboxService& service, const ReplicaRouter& router, const httplib::Request& req) {
  const std::string id = req.matches[1];
  const std::string port_text = req.matches[2];
  int port = 0;
  const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port < 1 || port > 65535) {
    return core::make_error(core::Errc::invalid_argument, "port " + port_text + " is not in 1-65535");
  }
  const std::string prefix = "/v1/sandboxes/" + id + "/proxy/" + port_text;
  auto rest = http::target_after(req.target, prefix);
  if (!rest) {
    return core::make_error(core::Errc::invalid_argument,
                            "the request target " + req.target.substr(0, 200) +
                                " does not spell /v1/sandboxes/{id}/proxy/{port} literally (percent-encoded?)");
  }
  Resolved r;
  auto owner = router.owner_endpoint(id, req);
  if (!owner) return owner.error();
  if (*owner) {
    // Another replica owns it: its own proxy route, as the client asked for it.
    r.target.endpoint = **owner;
    r.target.headers = {{ReplicaRouter::kForwardedHeader, router.replica_id()}};
    if (!router.api_key().empty()) r.target.headers.emplace_back("OPEN-SANDBOX-API-KEY", router.api_key());
    r.upstream_target = prefix + *rest;
    r.is_served_here = false;
    return r;
  }
  auto address = service.address(id, port);
  if (!address) return address.error();
  r.target.endpoint.host = address->host;
  r.target.endpoint.port = address->port;
  if (address->is_on_peer) {
    // The overflow peer owns it: the peer's proxy route, with the peer's API key.
    if (!address->peer_api_key.empty()) r.target.headers = {{"OPEN-SANDBOX-API-KEY", address->peer_api_key}};
    r.upstream_target = "/v1/sandboxes/" + address->peer_id + "/proxy/" + port_text + *rest;
  } else {
    r.target.headers = {{"X-EXECD-ACCESS-TOKEN", address->access_token}};
    r.upstream_target = *rest;
  }
  return r;
}

}  // namespace

std::shared_ptr<const http::ReverseProxy> register_proxy_routes(http::HttpServer& server,
                                                                std::shared_ptr<SandboxService> service,
                                                                std::shared_ptr<const ReplicaRouter> router,
                                                                const std::string& withheld_header) {
  http::ProxyOptions options;
  options.withheld_headers = {withheld_header};
  options.stopping = &server.stopping_flag();
  auto proxy = std::make_shared<const http::ReverseProxy>(options);
  const std::string pattern = R"(/v1/sandboxes/([^/]+)/proxy/([0-9]+)(/.*)?)";
  // http::add_proxy_routes' shape, plus X-Gateway-Replica on what is served here.
  auto forward = [proxy, service, router](const httplib::Request& req, httplib::Response& res,
                                          const httplib::ContentReader* body) {
    auto call = resolve(*service, *router, req);
    if (!call || call->is_served_here) router->mark(res);
    if (!call) return http::write_error(res, call.error());  // a streaming route closes: the body is unread
    proxy->forward(req, res, body, call->target, call->upstream_target);
  };
  auto without_body = [forward](const httplib::Request& req, httplib::Response& res) { forward(req, res, nullptr); };
  auto with_body = [forward](const httplib::Request& req, httplib::Response& res,
                             const httplib::ContentReader& reader) { forward(req, res, &reader); };
  using M = http::HttpServer::Method;
  server.route(M::get, pattern, without_body);
  server.route(M::options, pattern, without_body);
  for (const M m : {M::post, M::put, M::patch, M::del}) server.route_streaming(m, pattern, with_body);
  return proxy;
}

}  // namespace execd::gateway::api
