#include "app.hpp"

#include "api/capabilities_routes.hpp"
#include "api/code_routes.hpp"
#include "api/command_routes.hpp"
#include "api/archive_routes.hpp"
#include "api/download_routes.hpp"
#include "api/edit_routes.hpp"
#include "api/grep_routes.hpp"
#include "api/invoke_routes.hpp"
#include "api/execution_routes.hpp"
#include "api/file_routes.hpp"
#include "api/process_routes.hpp"
#include "api/pty_routes.hpp"
#include "api/session_routes.hpp"
#include "api/tus_routes.hpp"
#include "api/upload_routes.hpp"
#include "api/usage_routes.hpp"
#include "api/watch_routes.hpp"
#include "api/metrics_routes.hpp"
#include "api/ping_routes.hpp"
#include "api/port_proxy_routes.hpp"
#include "api/ui_routes.hpp"
#include "commands/command_runner.hpp"
#include "commands/session_manager.hpp"
#include "exec/execution_registry.hpp"
#include "files/disk_quota.hpp"
#include "files/file_service.hpp"
#include "files/resumable_uploads.hpp"
#include "invoke/invoker.hpp"
#include "isolation/isolator.hpp"
#include "http/http_server.hpp"
#include "http/webhook_sender.hpp"
#include "jupyter/context_manager.hpp"
#include "metrics/execution_metrics.hpp"
#include "metrics/metrics_sampler.hpp"
#include "metrics/prometheus.hpp"
#include "process/child_reaper.hpp"
#include "process/reactor.hpp"
#include "process/session_ledger.hpp"
#include "pty/pty_registry.hpp"

namespace execd {

namespace {

constexpr const char* kSessionLedger = "sessions";

// The Prometheus series of GET /metrics?format=prometheus: executions counted as they
// end, and counts other modules keep, read at each scrape.
std::shared_ptr<metrics::Registry> make_prometheus(exec::ExecutionRegistry& executions,
                                                   std::shared_ptr<jupyter::ContextManager> contexts,
                                                   const http::HttpServer& server) {
  auto registry = std::make_shared<metrics::Registry>();
  auto counted = std::make_shared<metrics::ExecutionMetrics>(registry);
  executions.set_finish_observer([counted](const std::string& kind, const exec::ExecutionOutcome& outcome,
                                           std::chrono::nanoseconds took) { counted->finished(kind, outcome, took); });
  // Weakly: the execution registry holds this registry (through its finish observer) and
  // the context manager holds the execution registry; a strong reference here would make
  // a cycle that keeps every service, and the daemon's cgroups, alive past shutdown.
  const std::weak_ptr<jupyter::ContextManager> weak = contexts;
  auto kernel_count = [weak](uint64_t jupyter::KernelLauncher::Counts::*field) {
    return [weak, field] {
      const auto c = weak.lock();
      return c ? static_cast<double>(c->kernel_counts().*field) : 0.0;
    };
  };
  registry->counter_callback("execd_kernel_starts_total", "Kernels started (warm pool included).", {},
                             kernel_count(&jupyter::KernelLauncher::Counts::starts));
  registry->counter_callback("execd_kernel_start_failures_total", "Kernel starts that failed.", {},
                             kernel_count(&jupyter::KernelLauncher::Counts::failures));
  registry->counter_callback("execd_kernel_restarts_total", "Kernels restarted for a context (died or reset).", {},
                             kernel_count(&jupyter::KernelLauncher::Counts::restarts));
  const http::SseCounters* sse = &server.sse_counters();  // the server outlives its routes' registry
  registry->counter_callback("execd_sse_bytes_total", "Bytes of events and keepalives streamed over SSE.", {},
                             [sse] { return static_cast<double>(sse->bytes.load(std::memory_order_relaxed)); });
  registry->gauge_callback("execd_sse_streams_open", "SSE streams open now.", {},
                           [sse] { return static_cast<double>(sse->open.load(std::memory_order_relaxed)); });
  return registry;
}

http::ServerOptions server_options(const core::Config& c) {
  http::ServerOptions o;
  o.host = c.host;
  o.port = c.port;
  o.access_token = c.access_token;
  o.max_threads = c.http_threads;
  o.read_timeout = c.http_read_timeout;
  o.sse_keepalive = c.sse_keepalive;
  o.max_request_bytes = c.max_request_bytes;
  o.max_header_count = c.max_header_count;
  o.max_header_bytes = c.max_header_bytes;
  return o;
}

}  // namespace

App::App(core::Config config) : config_(std::move(config)) {
  // A daemon that died abruptly left its sessions' processes running (its direct
  // children died with it, their descendants did not): end them before its directory goes.
  auto runtime = core::RuntimeDir::create(
      config_.runtime_base.empty() ? core::RuntimeDir::default_base() : config_.runtime_base,
      [](const std::string& stale) { process::SessionLedger::end_recorded(stale + "/" + kSessionLedger); });
  if (runtime) {
    runtime_.emplace(std::move(runtime).value());
  } else {
    runtime_error_ = runtime.error();
  }
  // Spill and output files live in the runtime directory unless --spill-dir says
  // otherwise, so the next daemon removes what a crashed one left.
  std::string spill_dir = config_.spill_dir;
  std::string ledger;
  if (runtime_) {
    ledger = runtime_->path() + "/" + kSessionLedger;
    if (spill_dir.empty()) {
      if (auto dir = runtime_->subdir("spill")) spill_dir = *dir;
    }
  }
  executions_ = std::make_shared<exec::ExecutionRegistry>(
      exec::EventLog::Options{config_.event_log_memory_bytes, spill_dir, config_.event_log_max_bytes}, config_.execution_retention);
  reactor_ = std::make_shared<process::Reactor>();
  reaper_ = std::make_shared<process::ChildReaper>(reactor_, ledger);
  // One isolation service for every execution route (defaults from the flags, the probe,
  // the daemon's cgroup parent); shared, so it outlives every command that uses it.
  auto isolator = api::make_isolator(config_, runtime_ ? runtime_->path() : std::string());
  isolator_ = isolator;
  commands_ = std::make_shared<commands::CommandRunner>(
      reactor_, reaper_, executions_,
      commands::CommandRunner::Options{config_.kill_grace, config_.envs_file, spill_dir,
                                       config_.execution_retention, isolator});
  sessions_ = std::make_shared<commands::SessionManager>(
      reactor_, reaper_, executions_,
      commands::SessionManager::Options{config_.kill_grace, config_.envs_file, config_.max_sessions, isolator});
  files::FileService::Options file_options;
  file_options.root = config_.files_root;
  file_options.max_upload_bytes = config_.max_upload_bytes;
  file_options.search_timeout = config_.search_timeout;
  // Counted once here (a walk), then kept up to date by every write and removal the
  // files API makes.
  if (config_.disk_quota_bytes > 0) {
    file_options.quota = std::make_shared<files::DiskQuota>(config_.files_root.empty() ? std::string(".") : config_.files_root,
                                                            config_.disk_quota_bytes);
    file_options.quota->rescan();
  }
  files_ = std::make_shared<files::FileService>(file_options);
  uploads_ = std::make_shared<files::ResumableUploads>(*files_, config_.upload_expiry);
  // Kernel connection files and logs live in the runtime directory too.
  std::string kernel_dir;
  if (runtime_) {
    if (auto dir = runtime_->subdir("kernels")) kernel_dir = *dir;
  }
  contexts_ = std::make_shared<jupyter::ContextManager>(
      reaper_, executions_,
      jupyter::ContextManager::Options{config_.kernel_for_language, config_.kernel_start_timeout, config_.kernel_pool_size,
                                       config_.kernel_start_concurrency, kernel_dir, isolator, config_.envs_file});
  sampler_ = std::make_shared<metrics::MetricsSampler>();
  server_ = std::make_unique<http::HttpServer>(server_options(config_));

  api::register_ping_routes(*server_);
  api::register_capabilities_routes(*server_, isolator);
  auto prometheus = make_prometheus(*executions_, contexts_, *server_);
  api::register_metrics_routes(*server_, sampler_, prometheus);
  api::register_execution_routes(*server_, executions_);
  // Result callbacks (issue 13), signed with --callback-secret, delivered off every
  // request's path.
  callbacks_ = std::make_shared<http::WebhookSender>(http::WebhookSender::Options{
      config_.callback_secret, config_.callback_max_in_flight, std::chrono::milliseconds(10000), config_.callback_retry_for});
  api::register_command_routes(*server_, commands_, sessions_, executions_, callbacks_);
  api::register_session_routes(*server_, sessions_);
  // Interactive terminals over WebSocket (issue 14); scrollback spills beside the logs.
  pty::PtyRegistry::Options pty_options;
  pty_options.max_sessions = config_.max_pty_sessions;
  pty_options.idle_timeout = config_.pty_idle_timeout;
  pty_options.envs_file = config_.envs_file;
  pty_options.scrollback.spill_dir = spill_dir;
  pty_options.isolator = isolator;
  ptys_ = std::make_shared<pty::PtyRegistry>(reactor_, reaper_, pty_options);
  api::register_pty_routes(*server_, ptys_);
  api::register_code_routes(*server_, contexts_, commands_, sessions_, executions_, callbacks_);
  // Handlers (issue 13): each invocation a fresh interpreter through the command runner;
  // working directories in the runtime directory, so a crashed daemon's are removed.
  invoke::Invoker::Options invoke_options;
  invoke_options.runtimes.typescript_module_dir = config_.typescript_module;
  invoke_options.work_base = runtime_ ? runtime_->path() + "/invocations" : spill_dir + "/execd-invocations";
  invoke_options.retention = config_.execution_retention;
  invoke_options.warm_start = config_.warm_invoke;
  invoke_options.node_spares = config_.node_spares;
  invoke_options.envs_file = config_.envs_file;
  invoke_options.kill_grace = config_.kill_grace;
  invoker_ = std::make_shared<invoke::Invoker>(commands_, reactor_, reaper_, executions_, invoke_options);
  api::register_invoke_routes(*server_, invoker_, isolator.get(), callbacks_);
  api::register_process_routes(*server_);
  api::register_file_routes(*server_, files_);
  api::register_download_routes(*server_, files_);
  api::register_upload_routes(*server_, files_, spill_dir);
  api::register_tus_routes(*server_, uploads_, config_.max_upload_bytes);
  // Files for agents (issue 16).
  api::register_edit_routes(*server_, files_);
  api::register_grep_routes(*server_, files_, config_.search_timeout);
  api::register_archive_routes(*server_, files_, files::ArchiveExtract::Limits{config_.max_extract_bytes, config_.max_extract_entries}, config_.spill_dir);
  api::register_usage_routes(*server_, file_options.quota);
  api::register_watch_routes(*server_, std::make_shared<api::WatchHub>(files_->resolver(), api::WatchHub::Options{config_.max_watches, config_.max_watched_dirs, std::chrono::seconds(30), std::chrono::milliseconds(50), config_.spill_dir}));
  // Web servers the user started inside the sandbox, at /proxy/{port} (issue 14); the
  // access token is withheld from them.
  api::add_port_proxy_metrics(*prometheus, api::register_port_proxy_routes(*server_, server_options(config_).auth_header));
  // The browser console (issue 14): its files need no token, every call it makes does.
  if (api::ui_enabled(config_.ui, config_.host)) api::register_ui_routes(*server_);
}

App::~App() = default;

core::Result<int> App::start() {
  if (runtime_error_) return *runtime_error_;
  return server_->bind();
}

void App::run() { server_->run(); }

void App::stop() {
  server_->stop();
  sampler_->stop();
  commands_->shutdown();
  sessions_->shutdown();
  ptys_->shutdown();
  contexts_->shutdown();
}

void App::abandon() { isolator_->remove_cgroups(); }

}  // namespace execd
