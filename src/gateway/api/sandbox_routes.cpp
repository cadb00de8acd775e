#include "gateway/api/sandbox_routes.hpp"

#include "api/query_params.hpp"
#include "gateway/api/replica_router.hpp"
#include "gateway/api/sandbox_json.hpp"
#include "gateway/sandbox_service.hpp"
#include "http/json_io.hpp"

namespace execd::gateway::api {
namespace {

using Method = http::HttpServer::Method;
using core::Errc;
using core::make_error;
using nlohmann::json;

constexpr const char* kSandbox = R"(/v1/sandboxes/([^/]+))";

std::string sandbox_path(const char* tail) { return std::string(kSandbox) + tail; }

// ?metadata=k%3Dv%26k2%3Dv2: after httplib's decoding the value is "k=v&k2=v2", each
// part itself URL-encoded (the spec's example double-encodes a space).
core::Result<std::map<std::string, std::string>> metadata_filter(const httplib::Request& req) {
  std::map<std::string, std::string> out;
  const size_t n = req.get_param_value_count("metadata");
  for (size_t i = 0; i < n; ++i) {
    const std::string value = req.get_param_value("metadata", i);
    size_t start = 0;
    while (start < value.size()) {
      const size_t amp = value.find('&', start);
      const std::string pair = value.substr(start, amp == std::string::npos ? std::string::npos : amp - start);
      start = amp == std::string::npos ? value.size() : amp + 1;
      if (pair.empty()) continue;
      const size_t eq = pair.find('=');
      if (eq == std::string::npos || eq == 0) {
        return make_error(Errc::invalid_argument, "metadata filter '" + pair + "' is not key=value");
      }
      out[httplib::detail::decode_url(pair.substr(0, eq), true)] =
          httplib::detail::decode_url(pair.substr(eq + 1), true);
    }
  }
  return out;
}

core::Result<SandboxQuery> list_query(const httplib::Request& req) {
  SandboxQuery q;
  const size_t n = req.get_param_value_count("state");
  for (size_t i = 0; i < n; ++i) {
    const std::string text = req.get_param_value("state", i);
    auto state = parse_state(text);
    if (!state) {
      return make_error(Errc::invalid_argument, "state '" + text +
                                                    "' is not a sandbox state (Pending, Running, Pausing, Paused, "
                                                    "Resuming, Stopping, Terminated, Failed)");
    }
    q.states.insert(*state);
  }
  auto metadata = metadata_filter(req);
  if (!metadata) return metadata.error();
  q.metadata = std::move(*metadata);
  auto page = execd::api::uint_query(req, "page", 1, 1'000'000);
  if (!page) return page.error();
  auto size = execd::api::uint_query(req, "pageSize", 1, 1000);
  if (!size) return size.error();
  q.page = page->value_or(1);
  q.page_size = size->value_or(20);
  return q;
}

core::Result<int> port_param(const std::string& text) {
  auto port = execd::api::parse_uint_param("port", text, 1, 65535);
  if (!port) return port.error();
  return static_cast<int>(*port);
}

}  // namespace

void register_sandbox_routes(http::HttpServer& server, std::shared_ptr<SandboxService> service,
                             EndpointOptions endpoints, std::shared_ptr<const ReplicaRouter> router) {
  server.route(Method::post, "/v1/sandboxes", [service, router](const httplib::Request& req, httplib::Response& res) {
    router->mark(res);
    auto body = http::parse_json_body(req);
    if (!body) return http::write_error(res, body.error());
    auto spec = parse_create_request(*body);
    if (!spec) return http::write_error(res, spec.error());
    // A gateway placing a sandbox on this one (its overflow peer) keeps the id it chose.
    auto created = service->create(std::move(*spec), req.get_header_value("X-Execd-Sandbox-Id"));
    if (!created) return http::write_error(res, created.error());
    res.set_header("Location", "/v1/sandboxes/" + created->id);
    http::write_json(res, create_response_json(*created), 202);
  });

  server.route(Method::get, "/v1/sandboxes", [service, router](const httplib::Request& req, httplib::Response& res) {
    router->mark(res);
    auto query = list_query(req);
    if (!query) return http::write_error(res, query.error());
    auto page = service->list(*query);
    if (!page) return http::write_error(res, page.error());
    json items = json::array();
    for (const auto& s : page->items) items.push_back(sandbox_json(s));
    const size_t pages = (page->total_items + query->page_size - 1) / query->page_size;
    http::write_json(res, {{"items", std::move(items)},
                           {"pagination",
                            {{"page", query->page},
                             {"pageSize", query->page_size},
                             {"totalItems", page->total_items},
                             {"totalPages", pages},
                             {"hasNextPage", query->page < pages}}}});
  });

  server.route(Method::get, kSandbox, [service, router](const httplib::Request& req, httplib::Response& res) {
    if (router->forward_if_elsewhere(req.matches[1], req, res)) return;
    auto s = service->get(req.matches[1]);
    if (!s) return http::write_error(res, s.error());
    http::write_json(res, sandbox_json(*s));
  });

  server.route(Method::del, kSandbox, [service, router](const httplib::Request& req, httplib::Response& res) {
    if (router->forward_if_elsewhere(req.matches[1], req, res)) return;
    if (auto r = service->remove(req.matches[1]); !r) return http::write_error(res, r.error());
    res.status = 204;
  });

  server.route(Method::post, sandbox_path("/pause"), [service, router](const httplib::Request& req, httplib::Response& res) {
    if (router->forward_if_elsewhere(req.matches[1], req, res)) return;
    if (auto r = service->pause(req.matches[1]); !r) return http::write_error(res, r.error());
    res.status = 202;
  });

  server.route(Method::post, sandbox_path("/resume"), [service, router](const httplib::Request& req, httplib::Response& res) {
    if (router->forward_if_elsewhere(req.matches[1], req, res)) return;
    if (auto r = service->resume(req.matches[1]); !r) return http::write_error(res, r.error());
    res.status = 202;
  });

  server.route(Method::post, sandbox_path("/renew-expiration"),
               [service, router](const httplib::Request& req, httplib::Response& res) {
                 if (router->forward_if_elsewhere(req.matches[1], req, res)) return;
                 auto body = http::parse_json_body(req);
                 if (!body) return http::write_error(res, body.error());
                 auto it = body->is_object() ? body->find("expiresAt") : body->end();
                 if (it == body->end() || !it->is_string()) {
                   return http::write_error(
                       res, make_error(Errc::invalid_argument, "expiresAt is required: an RFC 3339 time string"));
                 }
                 auto when = parse_iso8601("expiresAt", it->get<std::string>());
                 if (!when) return http::write_error(res, when.error());
                 auto renewed = service->renew(req.matches[1], *when);
                 if (!renewed) return http::write_error(res, renewed.error());
                 http::write_json(res, {{"expiresAt", iso8601(*renewed)}});
               });

  server.route(Method::patch, sandbox_path("/metadata"), [service, router](const httplib::Request& req, httplib::Response& res) {
    if (router->forward_if_elsewhere(req.matches[1], req, res)) return;
    auto body = http::parse_json_body(req);
    if (!body) return http::write_error(res, body.error());
    auto patch = parse_metadata_patch(*body);
    if (!patch) return http::write_error(res, patch.error());
    auto s = service->patch_metadata(req.matches[1], *patch);
    if (!s) return http::write_error(res, s.error());
    http::write_json(res, sandbox_json(*s));
  });

  server.route(Method::get, sandbox_path("/endpoints/([^/]+)"),
               [service, endpoints, router](const httplib::Request& req, httplib::Response& res) {
                 if (router->forward_if_elsewhere(req.matches[1], req, res)) return;
                 auto port = port_param(req.matches[2]);
                 if (!port) return http::write_error(res, port.error());
                 if (req.has_param("expires")) {
                   return http::write_error(
                       res, make_error(Errc::not_supported, "expires: signed endpoint routes are not supported"));
                 }
                 const std::string id = req.matches[1];
                 auto address = service->address(id, *port);
                 if (!address) return http::write_error(res, address.error());
                 const bool proxy = endpoints.is_proxy_mode || req.get_param_value("use_server_proxy") == "true";
                 if (address->is_on_peer && !proxy) {
                   // Direct mode: the sandbox's own address is what the peer that runs it says.
                   auto peer = service->peer_endpoint(id, *port);
                   if (!peer) return http::write_error(res, peer.error());
                   return http::write_json(res, {{"endpoint", peer->endpoint}, {"headers", peer->headers}});
                 }
                 // Without --public-url, the address the client reached us at.
                 const std::string base =
                     endpoints.public_url.empty() ? "http://" + req.get_header_value("Host") : endpoints.public_url;
                 const std::string endpoint =
                     proxy ? base + "/v1/sandboxes/" + id + "/proxy/" + std::to_string(*port)
                           : address->host + ":" + std::to_string(address->port);
                 // A sandbox on the peer has no token here: the peer's proxy adds it.
                 json headers = json::object();
                 if (!address->access_token.empty()) headers["X-EXECD-ACCESS-TOKEN"] = address->access_token;
                 http::write_json(res, {{"endpoint", endpoint}, {"headers", std::move(headers)}});
               });

  // Snapshots are out of this gateway's scope: a clear 501 rather than a 404 that reads
  // like a typo in the path.
  auto no_snapshots = [](const httplib::Request&, httplib::Response& res) {
    http::write_error(res, make_error(Errc::not_supported, "snapshots are not supported by this gateway"));
  };
  server.route(Method::post, sandbox_path("/snapshots"), no_snapshots);
  server.route(Method::get, "/v1/snapshots", no_snapshots);
  server.route(Method::get, R"(/v1/snapshots/([^/]+))", no_snapshots);
  server.route(Method::del, R"(/v1/snapshots/([^/]+))", no_snapshots);
}

}  // namespace execd::gateway::api
