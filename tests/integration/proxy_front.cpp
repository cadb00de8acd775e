// A stand-alone reverse proxy for the proxy tests: an HttpServer whose only routes are
// /p/{port}/... -> 127.0.0.1:{port}/..., through http::ReverseProxy, so the tests can
// measure the proxy's own process (RSS) and kill its upstreams under it.
//
//   proxy_front --port 0 --host 127.0.0.1 --log-level info [--api-key K] [--upstream-token T]
//
// --api-key: clients must send OPEN-SANDBOX-API-KEY: K (as the gateway's clients do); it is
// not forwarded. --upstream-token: every upstream request gets X-EXECD-ACCESS-TOKEN: T.
// Prints "listening on HOST:PORT" to stderr once bound (DaemonProcess reads it).
#include <csignal>
#include <string>
#include <thread>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "http/http_server.hpp"
#include "http/reverse_proxy.hpp"

using namespace execd;

namespace {
http::HttpServer* g_server = nullptr;
}

int main(int argc, char** argv) {
  http::ServerOptions options;
  options.port = 0;
  std::string upstream_token;
  std::string level = "info";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const std::string value = argv[i + 1];
    if (flag == "--port") options.port = std::stoi(value);
    else if (flag == "--host") options.host = value;
    else if (flag == "--log-level") level = value;
    else if (flag == "--api-key") options.access_token = value;
    else if (flag == "--upstream-token") upstream_token = value;
  }
  options.auth_header = "OPEN-SANDBOX-API-KEY";
  spdlog::set_default_logger(spdlog::stderr_logger_mt("proxy_front"));
  spdlog::set_level(spdlog::level::from_str(level));

  http::HttpServer server(options);
  http::ProxyOptions proxy_options;
  proxy_options.withheld_headers = {options.auth_header};
  proxy_options.stopping = &server.stopping_flag();
  auto proxy = std::make_shared<const http::ReverseProxy>(proxy_options);
  http::add_proxy_routes(server, R"(/p/([0-9]+)(/.*)?)", proxy,
                         [upstream_token](const httplib::Request& req) -> core::Result<http::ProxyCall> {
                           const std::string port = req.matches[1];
                           auto rest = http::target_after(req.target, "/p/" + port);
                           if (!rest) return core::make_error(core::Errc::invalid_argument, "bad proxy target");
                           http::ProxyCall call;
                           call.target.endpoint = http::ClientEndpoint{"127.0.0.1", std::stoi(port), ""};
                           if (!upstream_token.empty()) call.target.headers = {{"X-EXECD-ACCESS-TOKEN", upstream_token}};
                           call.upstream_target = *rest;
                           return call;
                         });
  auto port = server.bind();
  if (!port) {
    spdlog::critical("{}", port.error().message);
    return 1;
  }
  g_server = &server;
  std::signal(SIGTERM, [](int) { g_server->stop(); });
  std::signal(SIGPIPE, SIG_IGN);
  spdlog::info("proxy_front listening on {}:{}", options.host, *port);
  server.run();
  return 0;
}
