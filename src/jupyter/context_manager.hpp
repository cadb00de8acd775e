#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <thread>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "exec/execution_registry.hpp"
#include "jupyter/code_context.hpp"
#include "jupyter/kernel_launcher.hpp"
#include "jupyter/kernelspec.hpp"
#include "process/child_reaper.hpp"

namespace execd::jupyter {

/// Code contexts by id (OpenSandbox /code, compat-notes §5), one kernel each, for any
/// language a kernelspec on the machine serves. A run without a context id uses its
/// language's default context, created on first use. Thread-safe.
class ContextManager {
 public:
  struct Options {
    std::map<std::string, std::string> kernel_for_language;  ///< --kernel LANG=SPEC
    std::chrono::milliseconds start_timeout{30000};
    size_t pool_size = 1;  ///< warm kernels kept per language used so far (0: none)
    size_t start_concurrency = 0;  ///< kernels starting at once (KernelLauncher); 0: one per core
    std::string runtime_dir;  ///< kernel runtime directories go here (the daemon's RuntimeDir); empty: $TMPDIR
    std::shared_ptr<isolation::Isolator> isolator;  ///< null: kernels only at level none without limits
    std::string envs_file;  ///< --envs-file: an isolated kernel's environment
  };

  ContextManager(std::shared_ptr<process::ChildReaper> reaper, std::shared_ptr<exec::ExecutionRegistry> executions,
                 Options options);
  ~ContextManager();

  /// Starts a kernel for `language` in `cwd` (created when missing). invalid_argument
  /// listing the available languages when none serves it; unavailable when the kernel
  /// does not start (naming the kernelspec). `limits`: the kernel's isolation (the
  /// daemon's defaults when not given); only an unisolated request gets a warm kernel.
  core::Result<std::shared_ptr<CodeContext>> create(const std::string& language, const std::string& cwd);
  core::Result<std::shared_ptr<CodeContext>> create(const std::string& language, const std::string& cwd,
                                                    const isolation::Limits& limits);
  /// The daemon's default isolation (--isolation and the limit flags).
  [[nodiscard]] isolation::Limits default_limits() const;
  [[nodiscard]] const std::shared_ptr<isolation::Isolator>& isolator() const { return options_.isolator; }
  [[nodiscard]] std::vector<std::shared_ptr<CodeContext>> list(const std::string& language = {}) const;
  [[nodiscard]] std::shared_ptr<CodeContext> find(const std::string& id) const;
  core::Result<void> remove(const std::string& id);
  /// Removes every context of `language` (the default one too); how many.
  size_t remove_language(const std::string& language);
  /// Queues `code` in context `id`, or in the default context of `language`.
  core::Result<std::shared_ptr<exec::Execution>> run(const std::string& code, const std::string& id,
                                                      const std::string& language, std::chrono::milliseconds timeout);
  /// Languages served, sorted.
  [[nodiscard]] std::vector<std::string> languages();
  /// Kernel starts, failures and restarts so far (the launcher's), for metrics.
  [[nodiscard]] KernelLauncher::Counts kernel_counts() const { return launcher_->counts(); }
  void shutdown();

 private:
  core::Result<KernelSpec> spec_for(const std::string& language);
  /// A pre-started kernel of `language`, if one is ready; asks for the pool to be topped up.
  std::unique_ptr<Kernel> take_warm(const std::string& language);
  void pool_work();

  std::shared_ptr<process::ChildReaper> reaper_;
  std::shared_ptr<exec::ExecutionRegistry> executions_;
  Options options_;
  std::shared_ptr<KernelLauncher> launcher_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<CodeContext>> contexts_;
  std::map<std::string, std::string> default_for_language_;
  std::mutex create_default_mu_;  // one default context per language, even when raced

  // The warm pool: kernels started ahead of demand, so creating a context does not wait
  // for a kernel to boot. One thread fills it, language by language.
  std::mutex pool_mu_;
  std::condition_variable pool_cv_;
  std::map<std::string, std::deque<std::unique_ptr<Kernel>>> pool_;
  std::deque<std::string> to_fill_;
  bool pool_stop_ = false;
  std::thread pool_thread_;
};

}  // namespace execd::jupyter
