#include "api/port_proxy_routes.hpp"

#include <charconv>
#include <string_view>

#include "http/websocket_frame.hpp"

namespace execd::api {
namespace {

// The offered subprotocols without execd's: the token offers (http::without_token_offers)
// and, beside one, the "execd" protocol a browser offers with it. Empty when nothing else
// was offered.
std::string without_execd_protocols(const httplib::Request& req) {
  std::string offered;
  auto [first, last] = req.headers.equal_range("Sec-WebSocket-Protocol");
  for (auto it = first; it != last; ++it) offered += (offered.empty() ? "" : ", ") + it->second;
  std::string kept = http::without_token_offers(offered);
  if (offered.find(http::kTokenSubprotocolPrefix) == std::string::npos) return kept;
  std::string out;
  std::string_view rest = kept;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    if (item != "execd") out += std::string(out.empty() ? "" : ", ") + std::string(item);
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return out;
}

core::Result<int> parse_port(const std::string& text) {
  int port = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || port < 1 || port > 65535) {
    return core::make_error(core::Errc::invalid_argument,
                            "port '" + text.substr(0, 20) + "' in /proxy/{port} is not a number in 1-65535");
  }
  return port;
}

}  // namespace

std::shared_ptr<const http::ReverseProxy> register_port_proxy_routes(http::HttpServer& server,
                                                                     const std::string& auth_header) {
  http::ProxyOptions options;
  // Sec-WebSocket-Protocol is withheld and, minus the token, put back per request.
  options.withheld_headers = {auth_header, "Sec-WebSocket-Protocol"};
  options.stopping = &server.stopping_flag();
  auto proxy = std::make_shared<const http::ReverseProxy>(options);
  http::add_proxy_routes(
      server, R"(/proxy/([^/?]*)(/.*)?)", proxy, [](const httplib::Request& req) -> core::Result<http::ProxyCall> {
        const std::string port_text = req.matches[1];
        auto port = parse_port(port_text);
        if (!port) return port.error();
        // The port the request came in on is the daemon's own (it listens on one):
        // forwarding there would have the daemon proxy to itself, request after request.
        if (*port == req.local_port) {
          return core::make_error(core::Errc::forbidden, "port " + port_text +
                                                             " is execd's own port; /proxy/{port} reaches servers "
                                                             "started inside the sandbox only");
        }
        const std::string prefix = "/proxy/" + port_text;
        auto upstream_target = http::target_after(req.target, prefix);
        if (!upstream_target) {
          return core::make_error(core::Errc::invalid_argument, "the request target " + req.target.substr(0, 200) +
                                                                    " does not spell /proxy/{port} literally "
                                                                    "(percent-encoded?)");
        }
        http::ProxyCall call;
        call.target.endpoint.host = "127.0.0.1";
        call.target.endpoint.port = *port;
        call.target.headers.emplace_back("X-Forwarded-Prefix", prefix);
        if (auto protocols = without_execd_protocols(req); !protocols.empty()) {
          call.target.headers.emplace_back("Sec-WebSocket-Protocol", std::move(protocols));
        }
        call.upstream_target = std::move(*upstream_target);
        return call;
      });
  return proxy;
}

void add_port_proxy_metrics(metrics::Registry& registry, std::shared_ptr<const http::ReverseProxy> proxy) {
  const http::ProxyStats* s = &proxy->stats();
  // The callbacks keep the proxy (and so its counters) alive as long as the registry.
  auto read = [proxy, s](const std::atomic<uint64_t> http::ProxyStats::*field) {
    return [proxy, s, field] { return static_cast<double>((s->*field).load(std::memory_order_relaxed)); };
  };
  registry.counter_callback("execd_port_proxy_requests_total",
                            "Requests forwarded by /proxy/{port} (WebSocket upgrades included).", {},
                            read(&http::ProxyStats::requests));
  registry.counter_callback("execd_port_proxy_upstream_failures_total",
                            "Requests to /proxy/{port} answered 502 or cut by the upstream.", {},
                            read(&http::ProxyStats::upstream_failures));
  registry.counter_callback("execd_port_proxy_bytes_total", "Body and WebSocket bytes through /proxy/{port}.",
                            {{"direction", "to_upstream"}}, read(&http::ProxyStats::bytes_to_upstream));
  registry.counter_callback("execd_port_proxy_bytes_total", "", {{"direction", "from_upstream"}},
                            read(&http::ProxyStats::bytes_from_upstream));
  registry.gauge_callback("execd_port_proxy_websockets_open", "WebSockets relayed by /proxy/{port} now.", {},
                          [proxy, s] { return static_cast<double>(s->websockets_open.load(std::memory_order_relaxed)); });
}

}  // namespace execd::api
