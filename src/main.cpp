// execd: argv + environment -> Config -> App; signals; exit code.
#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdlib.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "app.hpp"
#include "core/config.hpp"
#include "core/logging.hpp"
#include "core/program.hpp"
#include "deferred_openssl_init.hpp"

extern char** environ;

namespace {

// Secrets must not reach what the daemon runs: commands at level none inherit the
// daemon's environment, and any process of the same user can read the daemon's
// /proc/<pid>/environ and cmdline, which show the original argv and environment blocks.
// So the access token's and the callback key's bytes are overwritten in place (what /proc
// shows) and their variables removed, once the config holds its own copies.
void scrub_secrets(int argc, char** argv) {
  constexpr std::pair<std::string_view, std::string_view> kSecrets[] = {
      {"EXECD_ACCESS_TOKEN", "--access-token"}, {"EXECD_CALLBACK_SECRET", "--callback-secret"}};
  for (const auto& [var, flag] : kSecrets) {
    const std::string prefix = std::string(var) + "=";
    for (char** e = environ; *e != nullptr; ++e) {
      if (std::string_view(*e).substr(0, prefix.size()) == prefix) std::memset(*e + prefix.size(), 'x', std::strlen(*e + prefix.size()));
    }
    ::unsetenv(std::string(var).c_str());
    const std::string flag_eq = std::string(flag) + "=";
    for (int i = 1; i < argc; ++i) {
      const std::string_view arg(argv[i]);
      if (arg == flag && i + 1 < argc) {
        std::memset(argv[i + 1], 'x', std::strlen(argv[i + 1]));
      } else if (arg.substr(0, flag_eq.size()) == flag_eq) {
        std::memset(argv[i] + flag_eq.size(), 'x', arg.size() - flag_eq.size());
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  execd::begin_openssl_init_forwarding();
  // Descriptors 0-2 must be taken before anything opens a pipe (core/program.hpp).
  if (!execd::core::take_standard_descriptors()) return 2;
  auto config = execd::core::parse_config(std::vector<std::string>(argv + 1, argv + argc), execd::core::environment_map());
  if (!config) {
    std::fprintf(stderr, "execd: %s\n", config.error().message.c_str());
    return 2;
  }
  scrub_secrets(argc, argv);
  if (config->show_help) {
    std::fputs(execd::core::config_help().c_str(), stdout);
    return 0;
  }
  if (auto r = execd::core::setup_logging(config->log_level, config->log_file); !r) {
    std::fprintf(stderr, "execd: %s\n", r.error().message.c_str());
    return 2;
  }
  // Each open stream holds a socket: take the hard limit on descriptors.
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  // Many HTTP threads, little allocation each: a few malloc arenas keep RSS flat.
  mallopt(M_ARENA_MAX, 2);

  // Signals are taken by one thread with sigwait; every other thread inherits the mask.
  const sigset_t stop_signals = execd::core::block_stop_signals();

  const auto grace = config->graceful_shutdown_timeout;
  const std::string host = config->host;
  const std::string port_file = config->port_file;
  execd::App app(std::move(config).value());
  auto port = app.start();
  if (!port) {
    spdlog::critical("{}", port.error().message);
    return 1;
  }
  spdlog::info("execd listening on {}:{}", host, *port);
  // A supervisor (execd-gateway's process backend) started us with --port 0 and waits
  // for this file.
  if (!port_file.empty() && !execd::core::write_port_file(port_file, *port)) {
    spdlog::critical("cannot write the port file {}", port_file);
    return 1;
  }

  execd::core::serve_until_signal(
      stop_signals, grace, [&] { app.run(); }, [&] { app.stop(); }, [&] { app.abandon(); });
  spdlog::info("execd stopped");
  return 0;
}
