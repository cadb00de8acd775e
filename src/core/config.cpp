#include "core/config.hpp"

#include <sstream>

#include "core/flag_table.hpp"

namespace execd::core {
namespace {

using Option = FlagOption<Config>;

const std::vector<Option>& options() {
  static const std::vector<Option> kOptions = {
      {"host", "EXECD_HOST", "ADDR", "address to listen on (default 127.0.0.1; 0.0.0.0 for all)",
       flag_string(&Config::host)},
      {"port", "EXECD_PORT", "N", "TCP port (default 44772; 0 picks a free one and logs it)",
       flag_port(&Config::port)},
      {"port-file", "EXECD_PORT_FILE", "PATH",
       "once listening, write the bound port here (atomically: a temp file renamed over it)",
       flag_string(&Config::port_file)},
      {"access-token", "EXECD_ACCESS_TOKEN", "TOKEN",
       "require header X-EXECD-ACCESS-TOKEN on every request (default: none)",
       flag_string(&Config::access_token)},
      {"http-threads", "EXECD_HTTP_THREADS", "N",
       "most HTTP connections served at once; each open stream holds one (default 4096)",
       flag_count(&Config::http_threads, 4, 65536)},
      {"http-read-timeout", "EXECD_HTTP_READ_TIMEOUT", "DUR", "limit for a request's headers to arrive, and for each wait for body bytes (default 30s)",
       flag_duration(&Config::http_read_timeout)},
      {"sse-keepalive", "EXECD_SSE_KEEPALIVE", "DUR",
       "keepalive comment on idle streams (default 3s; clients time out at about 10s)",
       flag_duration(&Config::sse_keepalive)},
      {"graceful-shutdown-timeout", "EXECD_API_GRACE_SHUTDOWN", "DUR",
       "time open streams get to end on SIGTERM (default 3s)", flag_duration(&Config::graceful_shutdown_timeout)},
      {"max-request-bytes", "EXECD_MAX_REQUEST_BYTES", "SIZE",
       "largest JSON request body; larger is 413 before it is read (uploads stream; default 4MiB)",
       [](Config& c, const std::string& v) -> Result<void> {
         auto n = parse_size(v);
         if (!n || *n < 1024) return make_error(Errc::invalid_argument, "must be >= 1KiB, got '" + v + "'");
         c.max_request_bytes = *n;
         return {};
       }},
      {"max-header-count", "EXECD_MAX_HEADER_COUNT", "N", "most headers in one request; more is 431 (default 100)",
       flag_count(&Config::max_header_count, 8, 10000)},
      {"max-header-bytes", "EXECD_MAX_HEADER_BYTES", "SIZE",
       "largest request line + headers; more is 431 (default 64KiB)",
       [](Config& c, const std::string& v) -> Result<void> {
         auto n = parse_size(v);
         if (!n || *n < 1024 || *n > (64u << 20)) {
           return make_error(Errc::invalid_argument, "must be 1KiB..64MiB, got '" + v + "'");
         }
         c.max_header_bytes = static_cast<size_t>(*n);
         return {};
       }},
      {"ui", "EXECD_UI", "on|off|auto",
       "serve the browser console at /ui (default auto: on only when --host is a loopback address)",
       [](Config& c, const std::string& v) -> Result<void> {
         if (v != "on" && v != "off" && v != "auto") {
           return make_error(Errc::invalid_argument, "must be on, off or auto, got '" + v + "'");
         }
         c.ui = v;
         return {};
       }},
      {"log-level", "EXECD_LOG_LEVEL", "LEVEL", "trace|debug|info|warn|error|critical|off (default info)",
       flag_log_level(&Config::log_level)},
      {"log-file", "EXECD_LOG_FILE", "PATH", "log to this file instead of stderr", flag_string(&Config::log_file)},
      {"event-log-memory", "EXECD_EVENT_LOG_MEMORY", "SIZE",
       "event bytes kept in memory per execution before spilling to disk (default 256KiB)",
       [](Config& c, const std::string& v) -> Result<void> {
         auto n = parse_size(v);
         if (!n || *n < 1024) return make_error(Errc::invalid_argument, "event-log-memory must be >= 1KiB, got '" + v + "'");
         c.event_log_memory_bytes = static_cast<size_t>(*n);
         return {};
       }},
      {"event-log-max", "EXECD_EVENT_LOG_MAX", "SIZE",
       "event bytes kept per execution, memory and disk, before later events are dropped (the output "
       "log keeps every byte; default 256MiB, 0 = unlimited)",
       flag_bytes(&Config::event_log_max_bytes)},
      {"spill-dir", "EXECD_SPILL_DIR", "DIR", "where spilled events go (default $TMPDIR or /tmp)",
       flag_string(&Config::spill_dir)},
      {"runtime-base", "EXECD_RUNTIME_BASE", "DIR",
       "where each daemon keeps a private directory of what must not outlive it; a daemon "
       "removes what dead ones left there (default $TMPDIR/execd-<uid>)",
       flag_string(&Config::runtime_base)},
      {"execution-retention", "EXECD_EXECUTION_RETENTION", "DUR",
       "how long finished executions stay readable (default 10m)", flag_duration(&Config::execution_retention)},
      {"kill-grace", "EXECD_KILL_GRACE", "DUR", "grace between SIGINT, SIGTERM and SIGKILL (default 3s)",
       flag_duration(&Config::kill_grace)},
      {"envs-file", "EXECD_ENVS", "PATH", "KEY=VALUE lines added to every command's environment",
       flag_string(&Config::envs_file)},
      {"max-sessions", "EXECD_MAX_SESSIONS", "N", "bash sessions alive at once (default 64)",
       flag_count(&Config::max_sessions, 1, 100000)},
      {"max-pty-sessions", "EXECD_MAX_PTY_SESSIONS", "N", "PTY sessions (POST /pty) at once; more is 503 (default 32)",
       flag_count(&Config::max_pty_sessions, 1, 100000)},
      {"pty-idle-timeout", "EXECD_PTY_IDLE_TIMEOUT", "DUR",
       "a PTY session no WebSocket has held for this long is removed, its shell killed (default 30m)",
       flag_duration(&Config::pty_idle_timeout)},
      {"files-root", "EXECD_FILES_ROOT", "DIR", "confine every files API path to DIR (default: none)",
       flag_string(&Config::files_root)},
      {"max-upload-bytes", "EXECD_MAX_UPLOAD_BYTES", "SIZE", "largest accepted upload (default: unlimited)",
       flag_bytes(&Config::max_upload_bytes)},
      {"upload-expiry", "EXECD_UPLOAD_EXPIRY", "DUR", "unfinished resumable uploads expire after (default 24h)",
       flag_duration(&Config::upload_expiry)},
      {"kernel-pool-size", "EXECD_KERNEL_POOL_SIZE", "N",
       "warm kernels kept per language used so far (default 1; 0 disables)",
       flag_count(&Config::kernel_pool_size, 0, 64)},
      {"kernel", "EXECD_KERNELS", "LANG=SPEC[,...]",
       "kernelspec serving a language, e.g. python=python3 (default: discovered)",
       [](Config& c, const std::string& v) -> Result<void> {
         std::stringstream ss(v);
         std::string item;
         while (std::getline(ss, item, ',')) {
           const auto eq = item.find('=');
           if (eq == std::string::npos || eq == 0 || eq + 1 == item.size()) {
             return make_error(Errc::invalid_argument, "expected LANG=KERNELSPEC, got '" + item + "'");
           }
           c.kernel_for_language[item.substr(0, eq)] = item.substr(eq + 1);
         }
         return {};
       }},
      {"callback-secret", "EXECD_CALLBACK_SECRET", "KEY",
       "sign result callbacks: X-Execd-Signature: sha256=<HMAC-SHA256 of the body> (default: unsigned)",
       flag_string(&Config::callback_secret)},
      {"callback-max-in-flight", "EXECD_CALLBACK_MAX_IN_FLIGHT", "N", "callback deliveries attempted at once (default 8)",
       flag_count(&Config::callback_max_in_flight, 1, 256)},
      {"callback-retry-for", "EXECD_CALLBACK_RETRY_FOR", "DUR",
       "retry a callback on connection errors and 5xx this long after its first attempt (default 60s)",
       flag_duration(&Config::callback_retry_for)},
      {"typescript-module", "EXECD_TYPESCRIPT_MODULE", "DIR",
       "the typescript package's directory, for TypeScript handlers on /invoke (make run passes tslab's)",
       flag_string(&Config::typescript_module)},
      {"warm-invoke", "EXECD_WARM_INVOKE", "on|off",
       "warm starts on /invoke: Python handlers forked from a zygote, JavaScript/TypeScript ones given a node started "
       "ahead (default on; off: every start cold)",
       [](Config& c, const std::string& v) -> Result<void> {
         if (v != "on" && v != "off") return make_error(Errc::invalid_argument, "must be on or off, got '" + v + "'");
         c.warm_invoke = v == "on";
         return {};
       }},
      {"node-spares", "EXECD_NODE_SPARES", "N",
       "single-use node processes kept started for warm JavaScript/TypeScript handlers on /invoke, per language and "
       "isolation level used so far (default 1; 0: they start cold)",
       flag_count(&Config::node_spares, 0, 16)},
      {"kernel-start-timeout", "EXECD_KERNEL_START_TIMEOUT", "DUR", "a kernel that is not ready by then fails (default 30s)",
       flag_duration(&Config::kernel_start_timeout)},
      {"kernel-start-concurrency", "EXECD_KERNEL_START_CONCURRENCY", "N",
       "kernels starting at once; later starts wait their turn (default: one per CPU core)",
       flag_count(&Config::kernel_start_concurrency, 0, 1024)},
      {"search-timeout", "EXECD_SEARCH_TIMEOUT", "DUR",
       "a file search ends by then with what it found, marked as cut (default 10s)",
       flag_duration(&Config::search_timeout)},
      {"max-watches", "EXECD_MAX_WATCHES", "N", "file watches (GET /files/watch) alive at once (default 64)",
       flag_count(&Config::max_watches, 1, 100000)},
      {"max-watched-dirs", "EXECD_MAX_WATCHED_DIRS", "N", "directories one recursive file watch may cover (default 8192)",
       flag_count(&Config::max_watched_dirs, 1, 1000000)},
      {"disk-quota", "EXECD_DISK_QUOTA", "SIZE", "bytes the files API may fill under the files root: uploads, replace, edit and extract past it are 507 (default: no quota)",
       flag_bytes(&Config::disk_quota_bytes)},
      {"max-extract-bytes", "EXECD_MAX_EXTRACT_BYTES", "SIZE", "bytes one extracted archive may expand to (default 4GiB)",
       flag_bytes(&Config::max_extract_bytes)},
      {"max-extract-entries", "EXECD_MAX_EXTRACT_ENTRIES", "N", "entries one extracted archive may hold (default 100000)",
       flag_count(&Config::max_extract_entries, 1, 100000000)},
      {"isolation", "EXECD_ISOLATION", "LEVEL",
       "default isolation of executions: none|process|namespace (default none; GET /capabilities says what "
       "this host supports)",
       [](Config& c, const std::string& v) -> Result<void> {
         if (v != "none" && v != "process" && v != "namespace") {
           return make_error(Errc::invalid_argument, "unknown isolation level '" + v + "' (use none, process or namespace)");
         }
         c.isolation = v;
         return {};
       }},
      {"memory-limit-mb", "EXECD_MEMORY_LIMIT_MB", "N", "default memory limit per execution in MiB (default 0: none)",
       flag_limit(&Config::memory_limit_mb, uint64_t{1} << 30)},
      {"max-processes", "EXECD_MAX_PROCESSES", "N", "default most processes per execution (default 0: no limit)",
       flag_limit(&Config::max_processes, uint64_t{1} << 22)},
      {"cpu-time-limit", "EXECD_CPU_TIME_LIMIT", "SECONDS", "default CPU seconds per process (default 0: none)",
       flag_limit(&Config::cpu_time_limit_s, uint64_t{1} << 31)},
      {"max-output-bytes", "EXECD_MAX_OUTPUT_BYTES", "N", "default output bytes kept per execution (default 0: no cap)",
       flag_limit(&Config::max_output_bytes, uint64_t{1} << 50)},
      {"max-open-files", "EXECD_MAX_OPEN_FILES", "N", "default open files per process (default 0: inherited)",
       flag_limit(&Config::max_open_files, uint64_t{1} << 20)},
      {"disk-limit-mb", "EXECD_DISK_LIMIT_MB", "N",
       "default size in MiB of a namespace-level workspace tmpfs (default 0: no cap)",
       flag_limit(&Config::disk_limit_mb, uint64_t{1} << 30)},
      {"cgroup-pool-size", "EXECD_CGROUP_POOL_SIZE", "N",
       "execution cgroups made ahead, off the request path; used ones are removed off it too (default 4; "
       "0: each execution makes and removes its own)",
       flag_count(&Config::cgroup_pool_size, 0, 1024)},
  };
  return kOptions;
}

}  // namespace

Result<Config> parse_config(const std::vector<std::string>& args,
                            const std::map<std::string, std::string>& env) {
  return parse_flags(options(), args, env);
}

std::string config_help() {
  return flags_help(options(),
                    "usage: execd [flags]\n\nRuns code, commands and file operations for agents over HTTP.\n");
}

}  // namespace execd::core
