#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "core/result.hpp"
#include "exec/execution.hpp"
#include "jupyter/kernel.hpp"
#include "jupyter/kernel_launcher.hpp"

namespace execd::jupyter {

/// A stateful code context: one kernel and the FIFO of cells waiting for it. Cells run
/// one at a time, in the order they were submitted, on the context's own thread, while
/// other contexts run in parallel. A kernel that died is restarted for the next cell,
/// which is told so (a `status` event: its state was lost).
class CodeContext {
 public:
  /// `limits`: the kernel's isolation, kept for its restarts.
  CodeContext(std::string id, KernelSpec spec, std::string cwd, std::shared_ptr<KernelLauncher> launcher,
              std::unique_ptr<Kernel> kernel, isolation::Limits limits = {});
  ~CodeContext();  ///< ends queued cells with an error, shuts the kernel down
  CodeContext(const CodeContext&) = delete;
  CodeContext& operator=(const CodeContext&) = delete;

  [[nodiscard]] const std::string& id() const { return id_; }
  [[nodiscard]] const std::string& language() const { return spec_.language; }
  [[nodiscard]] const std::string& cwd() const { return cwd_; }
  [[nodiscard]] const isolation::Limits& limits() const { return limits_; }

  /// Queues `code`; its events (init first, at once) go to `execution`'s log, which
  /// gets exactly one terminal event.
  void submit(std::shared_ptr<exec::Execution> execution, std::string code, std::chrono::milliseconds timeout);
  /// Interrupts the running cell (KeyboardInterrupt in Python), or, when the context is
  /// between cells with one queued, the next cell as soon as it starts (a client may send
  /// the interrupt right after its run request). Conflict when nothing runs or waits.
  core::Result<void> interrupt();
  /// Replaces the kernel with a fresh one (state lost), after the running cell.
  void request_restart();

 private:
  struct Job {
    std::shared_ptr<exec::Execution> execution;
    std::string code;
    std::chrono::milliseconds timeout;
  };
  void work();
  void run(Job& job);

  std::string id_;
  KernelSpec spec_;
  std::string cwd_;
  std::shared_ptr<KernelLauncher> launcher_;
  isolation::Limits limits_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  bool stop_ = false;
  bool busy_ = false;
  bool restart_requested_ = false;
  bool interrupt_next_ = false;  // an interrupt for the queued cell that starts next
  std::unique_ptr<Kernel> kernel_;  // replaced only by the worker, under mu_
  std::thread worker_;
};

}  // namespace execd::jupyter
