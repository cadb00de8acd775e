#pragma once

#include <memory>
#include <optional>

#include "core/config.hpp"
#include "core/result.hpp"
#include "core/runtime_dir.hpp"

namespace execd {

namespace commands { class CommandRunner; class SessionManager; }
namespace exec { class ExecutionRegistry; }
namespace files { class FileService; class ResumableUploads; }
namespace invoke { class Invoker; }
namespace isolation { class Isolator; }
namespace process { class ChildReaper; class Reactor; }
namespace pty { class PtyRegistry; }
namespace http { class HttpServer; class WebhookSender; }
namespace jupyter { class ContextManager; }
namespace metrics { class MetricsSampler; }

/// The composition root: builds every service once from the Config, wires the routes,
/// and owns the order of start-up and shutdown. There are no globals; whatever a route
/// needs is handed to it here.
class App {
 public:
  explicit App(core::Config config);
  ~App();
  App(const App&) = delete;
  App& operator=(const App&) = delete;

  /// Binds the listener; returns the bound port.
  core::Result<int> start();
  /// Serves until stop(); returns when every connection has ended.
  void run();
  /// Stops accepting, ends open streams, and shuts domain services down (their child
  /// processes included). Safe from any thread, once.
  void stop();
  /// For a process exiting without destructors after stop() (connections held open past
  /// the grace period): kills what runs in the daemon's cgroups and removes them, which
  /// the destructors would have done. Safe while other threads still run.
  void abandon();

 private:
  core::Config config_;
  std::optional<core::RuntimeDir> runtime_;  // first made, last removed
  std::optional<core::Error> runtime_error_;
  std::shared_ptr<exec::ExecutionRegistry> executions_;
  std::shared_ptr<process::Reactor> reactor_;  // before the runners: they use it until they go
  std::shared_ptr<process::ChildReaper> reaper_;
  std::shared_ptr<isolation::Isolator> isolator_;
  std::shared_ptr<commands::CommandRunner> commands_;
  std::shared_ptr<commands::SessionManager> sessions_;
  std::shared_ptr<pty::PtyRegistry> ptys_;
  std::shared_ptr<http::WebhookSender> callbacks_;
  std::shared_ptr<invoke::Invoker> invoker_;  // after commands_: destroyed first, its queued results done
  std::shared_ptr<files::FileService> files_;
  std::shared_ptr<files::ResumableUploads> uploads_;
  std::shared_ptr<jupyter::ContextManager> contexts_;
  std::shared_ptr<metrics::MetricsSampler> sampler_;
  std::unique_ptr<http::HttpServer> server_;
};

}  // namespace execd
