#include "app.hpp"

#include "api/execution_routes.hpp"
#include "api/metrics_routes.hpp"
#include "api/ping_routes.hpp"
#include "exec/execution_registry.hpp"
#include "http/http_server.hpp"
#include "metrics/metrics_sampler.hpp"

namespace execd {

namespace {

http::ServerOptions server_options(const core::Config& c) {
  http::ServerOptions o;
  o.host = c.host;
  o.port = c.port;
  o.access_token = c.access_token;
  o.max_threads = c.http_threads;
  o.read_timeout = c.http_read_timeout;
  o.sse_keepalive = c.sse_keepalive;
  return o;
}

}  // namespace

App::App(core::Config config) : config_(std::move(config)) {
  executions_ = std::make_shared<exec::ExecutionRegistry>(
      exec::EventLog::Options{config_.event_log_memory_bytes, config_.spill_dir}, config_.execution_retention);
  sampler_ = std::make_shared<metrics::MetricsSampler>();
  server_ = std::make_unique<http::HttpServer>(server_options(config_));

  api::register_ping_routes(*server_);
  api::register_metrics_routes(*server_, sampler_);
  api::register_execution_routes(*server_, executions_);
}

App::~App() = default;

core::Result<int> App::start() { return server_->bind(); }

void App::run() { server_->run(); }

void App::stop() {
  server_->stop();
  sampler_->stop();
}

}  // namespace execd
