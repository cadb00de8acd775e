#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "core/unique_fd.hpp"
#include "exec/event_log.hpp"
#include "jupyter/kernel_client.hpp"
#include "jupyter/kernelspec.hpp"
#include "process/child_reaper.hpp"

namespace execd::jupyter {

/// One running kernel: its process (own process group, connection file with a fresh
/// HMAC key in a private 0700 directory, removed with the kernel) and its KernelClient.
/// start() returns only once the kernel answered kernel_info_request and its iopub
/// output reaches us, so no early output is lost.
class Kernel {
 public:
  static core::Result<std::unique_ptr<Kernel>> start(const KernelSpec& spec, const std::string& cwd,
                                                     std::shared_ptr<process::ChildReaper> reaper,
                                                     std::chrono::milliseconds timeout);
  /// shutdown_request, a short wait, then SIGKILL to the group; reaped; files removed.
  ~Kernel();
  Kernel(const Kernel&) = delete;
  Kernel& operator=(const Kernel&) = delete;

  struct Outcome {
    bool died = false;
    std::string death;  ///< why, when died
    bool timed_out = false;
  };
  /// Runs one cell, appending its events to `log` as they arrive (stream output,
  /// execution_count + result, display_data as result, status + error), and returns when
  /// it is over: execute_reply and idle, or execute_reply plus a short grace (some
  /// kernels never send idle), or the kernel died. `timeout` > 0 interrupts the cell
  /// when it expires. The caller writes the terminal event.
  Outcome execute(const std::string& code, const std::shared_ptr<exec::EventLog>& log, std::chrono::milliseconds timeout);
  /// SIGINT (or interrupt_request, per the kernelspec) to the running cell.
  void interrupt();
  [[nodiscard]] bool is_dead() const { return client_->is_dead(); }
  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] const KernelSpec& spec() const { return spec_; }

 private:
  struct Waiter;
  Kernel() = default;
  static core::Result<std::unique_ptr<Kernel>> start_once(const KernelSpec& spec, const std::string& cwd,
                                                          std::shared_ptr<process::ChildReaper> reaper,
                                                          std::chrono::milliseconds timeout);

  KernelSpec spec_;
  std::shared_ptr<process::ChildReaper> reaper_;
  pid_t pid_ = -1;
  core::UniqueFd pidfd_;
  std::string runtime_dir_;
  std::unique_ptr<KernelClient> client_;
  std::shared_ptr<Waiter> waiter_;
};

}  // namespace execd::jupyter
