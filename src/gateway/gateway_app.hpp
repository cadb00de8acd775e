#pragma once

#include <memory>

#include "core/result.hpp"
#include "gateway/gateway_config.hpp"

namespace execd::http {
class HttpServer;
class ReverseProxy;
}  // namespace execd::http

namespace execd::gateway {

class Backend;
class SandboxService;

/// execd-gateway's composition root: from the GatewayConfig it builds the sandbox table
/// (SQLite), the backend (--backend), the lifecycle service and the HTTP server with its
/// routes, and owns the order of start-up and shutdown. No globals.
class GatewayApp {
 public:
  explicit GatewayApp(GatewayConfig config);
  ~GatewayApp();
  GatewayApp(const GatewayApp&) = delete;
  GatewayApp& operator=(const GatewayApp&) = delete;

  /// Opens the table and the backend, reconciles them, binds the listener; returns the
  /// bound port. An error names what could not be had (state file, engine, port).
  core::Result<int> start();
  /// Serves until stop(); returns when every connection has ended.
  void run();
  /// Stops accepting and the service's threads. Sandboxes keep running: the next gateway
  /// on the same --state serves them again. Safe from any thread, once.
  void stop();

 private:
  GatewayConfig config_;
  std::shared_ptr<Backend> backend_;
  std::shared_ptr<SandboxService> service_;
  std::unique_ptr<http::HttpServer> server_;
  std::shared_ptr<const http::ReverseProxy> proxy_;
};

}  // namespace execd::gateway
