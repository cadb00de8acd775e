#include "gateway/api/proxy_routes.hpp"

#include <charconv>

namespace execd::gateway::api {

std::shared_ptr<const http::ReverseProxy> register_proxy_routes(http::HttpServer& server, ProxyTargetResolver resolve,
                                                                const std::string& withheld_header) {
  http::ProxyOptions options;
  options.withheld_headers = {withheld_header};
  options.stopping = &server.stopping_flag();
  auto proxy = std::make_shared<const http::ReverseProxy>(options);
  http::add_proxy_routes(
      server, R"(/v1/sandboxes/([^/]+)/proxy/([0-9]+)(/.*)?)", proxy,
      [resolve = std::move(resolve)](const httplib::Request& req) -> core::Result<http::ProxyCall> {
        const std::string id = req.matches[1];
        const std::string port_text = req.matches[2];
        int port = 0;
        const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
        if (ec != std::errc() || end != port_text.data() + port_text.size() || port < 1 || port > 65535) {
          return core::make_error(core::Errc::invalid_argument, "port " + port_text + " is not in 1-65535");
        }
        auto upstream_target = http::target_after(req.target, "/v1/sandboxes/" + id + "/proxy/" + port_text);
        if (!upstream_target) {
          return core::make_error(core::Errc::invalid_argument,
                                  "the request target " + req.target.substr(0, 200) +
                                      " does not spell /v1/sandboxes/{id}/proxy/{port} literally (percent-encoded?)");
        }
        auto target = resolve(id, port);
        if (!target) return target.error();
        return http::ProxyCall{std::move(*target), std::move(*upstream_target)};
      });
  return proxy;
}

}  // namespace execd::gateway::api
