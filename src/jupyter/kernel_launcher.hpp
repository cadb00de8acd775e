#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "core/result.hpp"
#include "jupyter/kernel.hpp"
#include "jupyter/kernelspec.hpp"
#include "process/child_reaper.hpp"

namespace execd::jupyter {

/// Starts kernels, at most `concurrency` at once, first come first served. Twenty Python
/// kernels importing at once on two cores each take twenty times as long; in turn, each
/// is ready in about the time one takes alone and the later ones wait.
///
/// Deadlines: a start first waits for its turn, for at most `timeout`
/// (--kernel-start-timeout), and then has the whole `timeout` again for the kernel to be
/// ready. The waiting is bounded, so a request never queues for ever, but it does not eat
/// into the kernel's own time: a kernel is declared broken only for its own slowness,
/// never because others started before it. A request can so take up to twice the timeout.
///
/// Thread-safe: the context manager, its warm pool and every context's restarts share one.
class KernelLauncher {
 public:
  struct Options {
    size_t concurrency = 0;  ///< kernels starting at once; 0: one per CPU core
    std::chrono::milliseconds timeout{30000};
    std::string runtime_base;  ///< where kernel runtime directories go (the daemon's RuntimeDir)
    std::shared_ptr<isolation::Isolator> isolator;  ///< null: only unisolated kernels
    std::string envs_file;  ///< --envs-file: an isolated kernel's environment
  };

  KernelLauncher(std::shared_ptr<process::ChildReaper> reaper, Options options);

  /// Waits for a turn, then Kernel::start; unavailable when the turn or the kernel does
  /// not come within the timeout.
  core::Result<std::unique_ptr<Kernel>> start(const KernelSpec& spec, const std::string& cwd,
                                              const isolation::Limits& limits = {});
  [[nodiscard]] size_t concurrency() const { return concurrency_; }

  /// Kernels started (warm ones included) and failed starts so far, and restarts of a
  /// context's kernel (reported by CodeContext): for metrics.
  struct Counts {
    uint64_t starts = 0;
    uint64_t failures = 0;
    uint64_t restarts = 0;
  };
  [[nodiscard]] Counts counts() const;
  void count_restart() { restarts_.fetch_add(1, std::memory_order_relaxed); }

 private:
  std::shared_ptr<process::ChildReaper> reaper_;
  Options options_;
  size_t concurrency_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t next_ticket_ = 0;  // tickets are served in order
  uint64_t serving_ = 0;      // tickets below this have had their turn (or gave up)
  size_t running_ = 0;
  std::map<uint64_t, bool> abandoned_;  // tickets that gave up before their turn
  std::atomic<uint64_t> starts_{0};
  std::atomic<uint64_t> failures_{0};
  std::atomic<uint64_t> restarts_{0};
};

}  // namespace execd::jupyter
