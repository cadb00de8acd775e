#include "core/config.hpp"

#include <charconv>
#include <functional>
#include <sstream>

namespace execd::core {
namespace {

using Setter = std::function<Result<void>(Config&, const std::string&)>;

struct Option {
  std::string flag;      // without the leading "--"
  std::string env;       // empty: no environment fallback
  std::string value_name;
  std::string help;
  Setter set;
};

Result<uint64_t> parse_uint(const std::string& text, uint64_t max) {
  uint64_t v = 0;
  const auto* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc() || p != end || v > max) {
    return make_error(Errc::invalid_argument, "not a whole number in range: '" + text + "'");
  }
  return v;
}

Setter set_string(std::string Config::*field) {
  return [field](Config& c, const std::string& v) -> Result<void> {
    c.*field = v;
    return {};
  };
}

template <typename Dur>
Setter set_duration(Dur Config::*field) {
  return [field](Config& c, const std::string& v) -> Result<void> {
    auto d = parse_duration(v);
    if (!d) return d.error();
    c.*field = std::chrono::duration_cast<Dur>(*d);
    return {};
  };
}

Setter set_count(size_t Config::*field, uint64_t min, uint64_t max) {
  return [field, min, max](Config& c, const std::string& v) -> Result<void> {
    auto n = parse_uint(v, max);
    if (!n || *n < min) {
      return make_error(Errc::invalid_argument,
                        "expected a number from " + std::to_string(min) + " to " + std::to_string(max) +
                            ", got '" + v + "'");
    }
    c.*field = static_cast<size_t>(*n);
    return {};
  };
}

Setter set_limit(uint64_t Config::*field, uint64_t max) {
  return [field, max](Config& c, const std::string& v) -> Result<void> {
    auto n = parse_uint(v, max);
    if (!n) return make_error(Errc::invalid_argument, "expected 0 (no limit) to " + std::to_string(max) + ", got '" + v + "'");
    c.*field = *n;
    return {};
  };
}

Setter set_bytes(uint64_t Config::*field) {
  return [field](Config& c, const std::string& v) -> Result<void> {
    auto n = parse_size(v);
    if (!n) return n.error();
    c.*field = *n;
    return {};
  };
}

const std::vector<Option>& options() {
  static const std::vector<Option> kOptions = {
      {"host", "EXECD_HOST", "ADDR", "address to listen on (default 127.0.0.1; 0.0.0.0 for all)",
       set_string(&Config::host)},
      {"port", "EXECD_PORT", "N", "TCP port (default 44772; 0 picks a free one and logs it)",
       [](Config& c, const std::string& v) -> Result<void> {
         auto n = parse_uint(v, 65535);
         if (!n) return make_error(Errc::invalid_argument, "port must be 0..65535, got '" + v + "'");
         c.port = static_cast<int>(*n);
         return {};
       }},
      {"port-file", "EXECD_PORT_FILE", "PATH",
       "once listening, write the bound port here (atomically: a temp file renamed over it)",
       set_string(&Config::port_file)},
      {"access-token", "EXECD_ACCESS_TOKEN", "TOKEN",
       "require header X-EXECD-ACCESS-TOKEN on every request (default: none)",
       set_string(&Config::access_token)},
      {"http-threads", "EXECD_HTTP_THREADS", "N",
       "most HTTP connections served at once; each open stream holds one (default 4096)",
       set_count(&Config::http_threads, 4, 65536)},
      {"http-read-timeout", "EXECD_HTTP_READ_TIMEOUT", "DUR", "limit for a request's headers to arrive, and for each wait for body bytes (default 30s)",
       set_duration(&Config::http_read_timeout)},
      {"sse-keepalive", "EXECD_SSE_KEEPALIVE", "DUR",
       "keepalive comment on idle streams (default 3s; clients time out at about 10s)",
       set_duration(&Config::sse_keepalive)},
      {"graceful-shutdown-timeout", "EXECD_API_GRACE_SHUTDOWN", "DUR",
       "time open streams get to end on SIGTERM (default 3s)", set_duration(&Config::graceful_shutdown_timeout)},
      {"max-request-bytes", "EXECD_MAX_REQUEST_BYTES", "SIZE",
       "largest JSON request body; larger is 413 before it is read (uploads stream; default 4MiB)",
       [](Config& c, const std::string& v) -> Result<void> {
         auto n = parse_size(v);
         if (!n || *n < 1024) return make_error(Errc::invalid_argument, "must be >= 1KiB, got '" + v + "'");
         c.max_request_bytes = *n;
         return {};
       }},
      {"max-header-count", "EXECD_MAX_HEADER_COUNT", "N", "most headers in one request; more is 431 (default 100)",
       set_count(&Config::max_header_count, 8, 10000)},
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
      {"log-level", "EXECD_LOG_LEVEL", "LEVEL", "trace|debug|info|warn|error|critical|off (default info)",
       [](Config& c, const std::string& v) -> Result<void> {
         static const char* kLevels[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};
         for (const char* l : kLevels) {
           if (v == l) {
             c.log_level = v;
             return {};
           }
         }
         return make_error(Errc::invalid_argument, "unknown log level '" + v + "'");
       }},
      {"log-file", "EXECD_LOG_FILE", "PATH", "log to this file instead of stderr", set_string(&Config::log_file)},
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
       set_bytes(&Config::event_log_max_bytes)},
      {"spill-dir", "EXECD_SPILL_DIR", "DIR", "where spilled events go (default $TMPDIR or /tmp)",
       set_string(&Config::spill_dir)},
      {"runtime-base", "EXECD_RUNTIME_BASE", "DIR",
       "where each daemon keeps a private directory of what must not outlive it; a daemon "
       "removes what dead ones left there (default $TMPDIR/execd-<uid>)",
       set_string(&Config::runtime_base)},
      {"execution-retention", "EXECD_EXECUTION_RETENTION", "DUR",
       "how long finished executions stay readable (default 10m)", set_duration(&Config::execution_retention)},
      {"kill-grace", "EXECD_KILL_GRACE", "DUR", "grace between SIGINT, SIGTERM and SIGKILL (default 3s)",
       set_duration(&Config::kill_grace)},
      {"envs-file", "EXECD_ENVS", "PATH", "KEY=VALUE lines added to every command's environment",
       set_string(&Config::envs_file)},
      {"max-sessions", "EXECD_MAX_SESSIONS", "N", "bash sessions alive at once (default 64)",
       set_count(&Config::max_sessions, 1, 100000)},
      {"files-root", "EXECD_FILES_ROOT", "DIR", "confine every files API path to DIR (default: none)",
       set_string(&Config::files_root)},
      {"max-upload-bytes", "EXECD_MAX_UPLOAD_BYTES", "SIZE", "largest accepted upload (default: unlimited)",
       set_bytes(&Config::max_upload_bytes)},
      {"upload-expiry", "EXECD_UPLOAD_EXPIRY", "DUR", "unfinished resumable uploads expire after (default 24h)",
       set_duration(&Config::upload_expiry)},
      {"kernel-pool-size", "EXECD_KERNEL_POOL_SIZE", "N",
       "warm kernels kept per language used so far (default 1; 0 disables)",
       set_count(&Config::kernel_pool_size, 0, 64)},
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
      {"kernel-start-timeout", "EXECD_KERNEL_START_TIMEOUT", "DUR", "a kernel that is not ready by then fails (default 30s)",
       set_duration(&Config::kernel_start_timeout)},
      {"kernel-start-concurrency", "EXECD_KERNEL_START_CONCURRENCY", "N",
       "kernels starting at once; later starts wait their turn (default: one per CPU core)",
       set_count(&Config::kernel_start_concurrency, 0, 1024)},
      {"search-timeout", "EXECD_SEARCH_TIMEOUT", "DUR",
       "a file search ends by then with what it found, marked as cut (default 10s)",
       set_duration(&Config::search_timeout)},
      {"max-watches", "EXECD_MAX_WATCHES", "N", "file watches (GET /files/watch) alive at once (default 64)",
       set_count(&Config::max_watches, 1, 100000)},
      {"max-watched-dirs", "EXECD_MAX_WATCHED_DIRS", "N", "directories one recursive file watch may cover (default 8192)",
       set_count(&Config::max_watched_dirs, 1, 1000000)},
      {"disk-quota", "EXECD_DISK_QUOTA", "SIZE", "bytes the files API may fill under the files root (default: no quota)",
       set_bytes(&Config::disk_quota_bytes)},
      {"max-extract-bytes", "EXECD_MAX_EXTRACT_BYTES", "SIZE", "bytes one extracted archive may expand to (default 4GiB)",
       set_bytes(&Config::max_extract_bytes)},
      {"max-extract-entries", "EXECD_MAX_EXTRACT_ENTRIES", "N", "entries one extracted archive may hold (default 100000)",
       set_count(&Config::max_extract_entries, 1, 100000000)},
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
       set_limit(&Config::memory_limit_mb, uint64_t{1} << 30)},
      {"max-processes", "EXECD_MAX_PROCESSES", "N", "default most processes per execution (default 0: no limit)",
       set_limit(&Config::max_processes, uint64_t{1} << 22)},
      {"cpu-time-limit", "EXECD_CPU_TIME_LIMIT", "SECONDS", "default CPU seconds per process (default 0: none)",
       set_limit(&Config::cpu_time_limit_s, uint64_t{1} << 31)},
      {"max-output-bytes", "EXECD_MAX_OUTPUT_BYTES", "N", "default output bytes kept per execution (default 0: no cap)",
       set_limit(&Config::max_output_bytes, uint64_t{1} << 50)},
      {"max-open-files", "EXECD_MAX_OPEN_FILES", "N", "default open files per process (default 0: inherited)",
       set_limit(&Config::max_open_files, uint64_t{1} << 20)},
      {"disk-limit-mb", "EXECD_DISK_LIMIT_MB", "N",
       "default size in MiB of a namespace-level workspace tmpfs (default 0: no cap)",
       set_limit(&Config::disk_limit_mb, uint64_t{1} << 30)},
  };
  return kOptions;
}

}  // namespace

Result<std::chrono::milliseconds> parse_duration(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) != 0)) ++i;
  if (i == 0) return make_error(Errc::invalid_argument, "not a duration: '" + text + "'");
  auto n = parse_uint(text.substr(0, i), uint64_t{1} << 40);
  if (!n) return make_error(Errc::invalid_argument, "not a duration: '" + text + "'");
  const std::string unit = text.substr(i);
  uint64_t ms_per = 0;
  if (unit.empty() || unit == "s") ms_per = 1000;
  else if (unit == "ms") ms_per = 1;
  else if (unit == "m") ms_per = 60'000;
  else if (unit == "h") ms_per = 3'600'000;
  else return make_error(Errc::invalid_argument, "unknown duration unit in '" + text + "' (use ms, s, m, h)");
  return std::chrono::milliseconds(static_cast<int64_t>(*n * ms_per));
}

Result<uint64_t> parse_size(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) != 0)) ++i;
  if (i == 0) return make_error(Errc::invalid_argument, "not a size: '" + text + "'");
  auto n = parse_uint(text.substr(0, i), uint64_t{1} << 50);
  if (!n) return make_error(Errc::invalid_argument, "not a size: '" + text + "'");
  std::string unit = text.substr(i);
  for (auto& ch : unit) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  uint64_t mult = 0;
  if (unit.empty() || unit == "b") mult = 1;
  else if (unit == "k" || unit == "kb" || unit == "kib") mult = uint64_t{1} << 10;
  else if (unit == "m" || unit == "mb" || unit == "mib") mult = uint64_t{1} << 20;
  else if (unit == "g" || unit == "gb" || unit == "gib") mult = uint64_t{1} << 30;
  else if (unit == "t" || unit == "tb" || unit == "tib") mult = uint64_t{1} << 40;
  else return make_error(Errc::invalid_argument, "unknown size unit in '" + text + "' (use k, M, G, T)");
  return *n * mult;
}

Result<Config> parse_config(const std::vector<std::string>& args,
                            const std::map<std::string, std::string>& env) {
  Config c;
  // Environment first, so flags override it.
  for (const auto& opt : options()) {
    if (opt.env.empty()) continue;
    auto it = env.find(opt.env);
    if (it == env.end()) continue;
    if (auto r = opt.set(c, it->second); !r) {
      return make_error(Errc::invalid_argument, opt.env + ": " + r.error().message);
    }
  }
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-h" || a == "--help") {
      c.show_help = true;
      continue;
    }
    if (a.rfind("--", 0) != 0) return make_error(Errc::invalid_argument, "unexpected argument '" + a + "'");
    std::string name = a.substr(2);
    std::string value;
    bool has_value = false;
    if (const auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    const Option* opt = nullptr;
    for (const auto& o : options()) {
      if (o.flag == name) opt = &o;
    }
    if (opt == nullptr) return make_error(Errc::invalid_argument, "unknown flag '--" + name + "' (see --help)");
    if (!has_value) {
      if (i + 1 >= args.size()) return make_error(Errc::invalid_argument, "flag '--" + name + "' needs a value");
      value = args[++i];
    }
    if (auto r = opt->set(c, value); !r) {
      return make_error(Errc::invalid_argument, "--" + name + ": " + r.error().message);
    }
  }
  return c;
}

std::string config_help() {
  std::ostringstream out;
  out << "usage: execd [flags]\n\nRuns code, commands and file operations for agents over HTTP.\n\nflags (env fallback):\n";
  for (const auto& o : options()) {
    std::string left = "  --" + o.flag + " " + o.value_name;
    if (left.size() < 34) left.resize(34, ' ');
    out << left << o.help;
    if (!o.env.empty()) out << " [" << o.env << "]";
    out << "\n";
  }
  out << "  -h, --help                      this text\n";
  return out.str();
}

}  // namespace execd::core
