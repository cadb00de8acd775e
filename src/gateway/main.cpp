// execd-gateway: argv + environment -> GatewayConfig -> GatewayApp; signals; exit code.
#include <malloc.h>
#include <signal.h>

#include <cstdio>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "core/logging.hpp"
#include "core/program.hpp"
#include "deferred_openssl_init.hpp"
#include "gateway/gateway_app.hpp"
#include "gateway/gateway_config.hpp"

int main(int argc, char** argv) {
  execd::begin_openssl_init_forwarding();
  // Descriptors 0-2 must be taken before anything opens a pipe (core/program.hpp).
  if (!execd::core::take_standard_descriptors()) return 2;
  auto config =
      execd::gateway::parse_gateway_config(std::vector<std::string>(argv + 1, argv + argc), execd::core::environment_map());
  if (!config) {
    std::fprintf(stderr, "execd-gateway: %s\n", config.error().message.c_str());
    return 2;
  }
  if (config->show_help) {
    std::fputs(execd::gateway::gateway_config_help().c_str(), stdout);
    return 0;
  }
  if (auto r = execd::core::setup_logging(config->log_level, config->log_file); !r) {
    std::fprintf(stderr, "execd-gateway: %s\n", r.error().message.c_str());
    return 2;
  }
  mallopt(M_ARENA_MAX, 2);

  // Signals are taken by one thread with sigwait; every other thread inherits the mask.
  const sigset_t stop_signals = execd::core::block_stop_signals();

  const auto grace = config->graceful_shutdown_timeout;
  const std::string host = config->host;
  const std::string port_file = config->port_file;
  execd::gateway::GatewayApp app(std::move(config).value());
  auto port = app.start();
  if (!port) {
    spdlog::critical("{}", port.error().message);
    return 1;
  }
  spdlog::info("execd-gateway listening on {}:{}", host, *port);
  if (!port_file.empty() && !execd::core::write_port_file(port_file, *port)) {
    spdlog::critical("cannot write the port file {}", port_file);
    return 1;
  }

  execd::core::serve_until_signal(stop_signals, grace, [&] { app.run(); }, [&] { app.stop(); });
  app.stop();
  spdlog::info("execd-gateway stopped; its sandboxes keep running");
  return 0;
}
