#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/flag_table.hpp"
#include "core/result.hpp"

namespace execd::core {

/// Everything the daemon can be told at start-up. Built once by parse_config() in main
/// and handed to the composition root; nothing reads flags or the environment later.
struct Config {
  // HTTP
  std::string host = "127.0.0.1";
  int port = 44772;                        ///< 0 binds a free port (logged at start)
  std::string port_file;                   ///< non-empty: the bound port is written here (a supervisor reads it)
  std::string access_token;                ///< empty: no auth
  size_t http_threads = 4096;              ///< most connections served at once (SSE holds one each)
  std::chrono::seconds http_read_timeout{30};
  std::chrono::milliseconds sse_keepalive{3000};
  std::chrono::milliseconds graceful_shutdown_timeout{3000};
  uint64_t max_request_bytes = 4ull << 20;  ///< JSON request bodies; larger is 413 before it is read
  size_t max_header_count = 100;            ///< request headers; more is 431
  size_t max_header_bytes = 64 * 1024;      ///< request line + headers; more is 431
  std::string ui = "auto";                  ///< browser console at /ui: on, off, auto (on for loopback)

  // Logging
  std::string log_level = "info";          ///< trace, debug, info, warn, error, critical, off
  std::string log_file;                    ///< empty: stderr

  // Executions and their event logs
  size_t event_log_memory_bytes = 256 * 1024;  ///< per log; older events spill to disk
  uint64_t event_log_max_bytes = 256ull << 20;  ///< per log, memory + disk; 0: unlimited
  std::string spill_dir;                       ///< empty: $TMPDIR or /tmp
  std::string runtime_base;                    ///< empty: $TMPDIR/execd-<uid> (core::RuntimeDir)
  std::chrono::seconds execution_retention{600};  ///< finished executions kept this long

  // Commands
  std::chrono::milliseconds kill_grace{3000};  ///< SIGINT -> SIGTERM -> SIGKILL steps
  size_t max_sessions = 64;                    ///< live bash sessions
  size_t max_pty_sessions = 32;                ///< PTY sessions (POST /pty) at once
  std::chrono::milliseconds pty_idle_timeout{1800000};  ///< a PTY session unattached this long is removed
  std::string envs_file;                       ///< EXECD_ENVS: KEY=VALUE lines for commands

  // Files
  std::string files_root;                      ///< empty: no jail
  uint64_t max_upload_bytes = 0;               ///< 0: unlimited
  std::chrono::seconds upload_expiry{86400};   ///< unfinished resumable uploads

  // Jupyter
  size_t kernel_pool_size = 1;                 ///< warm kernels kept per language used so far
  std::map<std::string, std::string> kernel_for_language;  ///< language -> kernelspec name
  std::chrono::milliseconds kernel_start_timeout{30000};
  std::string callback_secret;                 ///< HMAC key of X-Execd-Signature on result callbacks
  size_t callback_max_in_flight = 8;           ///< callback deliveries attempted at once
  std::chrono::milliseconds callback_retry_for{60000};  ///< retries end this long after the first attempt
  std::string typescript_module;               ///< the `typescript` package's directory, for TypeScript handlers
  bool warm_invoke = true;                     ///< warm starts on /invoke: Python forked by a zygote, node spares (false: every start cold)
  size_t node_spares = 1;                      ///< node spares per JavaScript/TypeScript flavour used (0: they start cold)
  size_t kernel_start_concurrency = 0;         ///< kernels starting at once; 0: one per CPU core

  // Files search
  std::chrono::milliseconds search_timeout{10000};  ///< a search ends with what it found by then
  // Files for agents (issue 16)
  size_t max_watches = 64;          ///< GET /files/watch streams' watches alive at once
  size_t max_watched_dirs = 8192;   ///< directories one recursive watch may cover
  uint64_t disk_quota_bytes = 0;    ///< bytes under the files root (or cwd); 0: no quota
  uint64_t max_extract_bytes = 4ull << 30;  ///< POST /files/extract: bytes an archive may expand to
  size_t max_extract_entries = 100000;      ///< POST /files/extract: entries in one archive

  // Isolation defaults for every execution; a request's own fields override them
  std::string isolation = "none";              ///< none | process | namespace
  uint64_t memory_limit_mb = 0;                ///< 0: unlimited (same for every limit below)
  uint64_t max_processes = 0;
  uint64_t cpu_time_limit_s = 0;
  uint64_t max_output_bytes = 0;
  uint64_t max_open_files = 0;
  uint64_t disk_limit_mb = 0;
  size_t cgroup_pool_size = 4;                 ///< spare execution cgroups made ahead (0: made per execution)

  bool show_help = false;
};

/// Parses argv with environment fallbacks (flag > env > default). `env` is a lookup so
/// tests can pass their own. Returns invalid_argument with one line naming the bad flag.
Result<Config> parse_config(const std::vector<std::string>& args,
                            const std::map<std::string, std::string>& env);

/// The --help text: every flag, its environment variable and default.
std::string config_help();

// parse_duration ("1500ms", "3s") and parse_size ("16MiB") live in core/flag_table.hpp.

}  // namespace execd::core
