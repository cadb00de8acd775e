#pragma once

#include <signal.h>

#include <chrono>
#include <functional>
#include <map>
#include <string>

namespace execd::core {

/// What both programs' main() do the same way (src/main.cpp, src/gateway/main.cpp).

/// The process environment as a map (for parse_config's environment fallbacks).
std::map<std::string, std::string> environment_map();

/// Descriptors 0-2 must be taken before anything opens a pipe: a program started with
/// one of them closed would otherwise get a pipe there, and a child's dup2 onto its own
/// stdio would leave it close-on-exec. False when /dev/null cannot fill one.
bool take_standard_descriptors();

/// Blocks SIGTERM and SIGINT in the calling thread (and so in every thread it starts
/// later) and ignores SIGPIPE; returns the set for serve_until_signal. Call before any
/// thread is started.
sigset_t block_stop_signals();

/// Writes `port` to `path` whole under a temp name, then renames it over `path`, so a
/// supervisor waiting for the file never reads half of it.
bool write_port_file(const std::string& path, int port);

/// Runs `run` (which serves until `stop` is called) while one thread waits for a signal
/// of `signals`: on one, `stop()`; if `run` has not returned `grace` + 1 s later (a
/// client holding its connection open), `abandon()` (when given: clean-up that must not
/// be skipped, safe while other threads still run) and the process exits with status 0
/// without running destructors. Returns once `run` has returned and the waiting thread
/// has ended.
void serve_until_signal(const sigset_t& signals, std::chrono::milliseconds grace, const std::function<void()>& run,
                        const std::function<void()>& stop, const std::function<void()>& abandon = {});

}  // namespace execd::core
