#include "jupyter/code_context.hpp"

#include "exec/event.hpp"
#include "process/proc_table.hpp"
#include "process/spawn.hpp"

#include <signal.h>

namespace execd::jupyter {

CodeContext::CodeContext(std::string id, KernelSpec spec, std::string cwd, std::shared_ptr<KernelLauncher> launcher,
                         std::unique_ptr<Kernel> kernel, isolation::Limits limits)
    : id_(std::move(id)), spec_(std::move(spec)), cwd_(std::move(cwd)), launcher_(std::move(launcher)),
      limits_(std::move(limits)), kernel_(std::move(kernel)) {
  worker_ = std::thread([this] { work(); });
}

CodeContext::~CodeContext() {
  std::deque<Job> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    left.swap(queue_);
    // A deleted context's running cell ends now: its kernel goes (the cell's stream
    // ends with the kernel's death).
    if (busy_ && kernel_) process::signal_group(kernel_->pid(), SIGKILL);
  }
  cv_.notify_all();
  for (auto& job : left) {
    job.execution->log()->close(exec::events::error("ContextDeleted", "the context " + id_ + " was deleted before this cell ran", {}));
  }
  if (worker_.joinable()) worker_.join();
  kernel_.reset();
}

void CodeContext::submit(std::shared_ptr<exec::Execution> execution, std::string code, std::chrono::milliseconds timeout) {
  execution->log()->append(exec::events::init(id_));
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back({std::move(execution), std::move(code), timeout});
  }
  cv_.notify_all();
}

core::Result<void> CodeContext::interrupt() {
  std::lock_guard<std::mutex> lock(mu_);
  if (busy_ && kernel_) {
    kernel_->interrupt();
    return {};
  }
  if (!queue_.empty()) {
    interrupt_next_ = true;
    return {};
  }
  return core::make_error(core::Errc::conflict, "context " + id_ + " is not running a cell");
}

void CodeContext::request_restart() {
  std::lock_guard<std::mutex> lock(mu_);
  restart_requested_ = true;
}

void CodeContext::work() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
    }
    run(job);
    std::lock_guard<std::mutex> lock(mu_);
    busy_ = false;
  }
}

void CodeContext::run(Job& job) {
  auto& log = *job.execution->log();
  Kernel* kernel = nullptr;
  bool interrupt_at_start = false;
  {
    std::unique_lock<std::mutex> lock(mu_);
    const bool dead = !kernel_ || kernel_->is_dead();
    if (dead || restart_requested_) {
      const bool was_running = kernel_ != nullptr;
      restart_requested_ = false;
      lock.unlock();
      std::unique_ptr<Kernel> old;
      {
        std::lock_guard<std::mutex> relock(mu_);
        old = std::move(kernel_);
      }
      old.reset();  // shut down (or reap) the old kernel outside the lock
      if (was_running) launcher_->count_restart();
      auto fresh = launcher_->start(spec_, cwd_, limits_);
      if (!fresh) {
        log.close(exec::events::error("KernelStartError", fresh.error().message, {}));
        return;
      }
      lock.lock();
      kernel_ = std::move(*fresh);
      if (was_running && dead) {
        log.append(exec::events::status("kernel restarted: the previous kernel died and its state was lost"));
      } else if (was_running) {
        log.append(exec::events::status("kernel restarted: state was reset"));
      }
    }
    kernel = kernel_.get();
    interrupt_at_start = interrupt_next_;
    interrupt_next_ = false;
  }
  const auto started = std::chrono::steady_clock::now();
  auto cpu_before = process::cpu_time_with_children_ms(kernel->pid());
  const bool peak_reset = process::reset_peak_rss(kernel->pid());
  const Kernel::Outcome outcome = kernel->execute(job.code, job.execution->log(), job.timeout, interrupt_at_start);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
  if (outcome.died) {
    // A kernel ended by one of its limits (an OOM kill in its cgroup, a cell that ran on
    // past its per-cell limit) says which.
    if (auto hit = outcome.limit ? outcome.limit : kernel->limit_hit()) {
      log.close(exec::events::error("KernelKilledByLimit",
                                    hit->message + "; the kernel died and the next run starts a new one", {hit->message}));
      return;
    }
    log.close(exec::events::error("DeadKernelError", "the kernel died (" + outcome.death + "); the next run starts a new one", {}));
    return;
  }
  nlohmann::json accounting = {{"duration_ms", ms}};
  auto cpu_after = process::cpu_time_with_children_ms(kernel->pid());
  if (cpu_before && cpu_after) accounting["cpu_time_ms"] = *cpu_after >= *cpu_before ? *cpu_after - *cpu_before : 0;
  // The kernel's peak RSS during this cell (its record was reset just before).
  if (auto peak = process::peak_rss_kib(kernel->pid()); peak && peak_reset) {
    accounting["peak_memory_mb"] = static_cast<double>(*peak) / 1024.0;
  }
  if (outcome.timed_out) accounting["timed_out"] = true;
  if (outcome.limit) {
    // Interrupted for a per-cell limit: the kernel and its state live on.
    accounting["killed"] = isolation::ExecutionGuard::killed_json(*outcome.limit);
    log.close(exec::events::error("CellLimitExceeded", outcome.limit->message + "; the cell was interrupted",
                                  {outcome.limit->message}, accounting));
    return;
  }
  log.close(exec::events::execution_complete(ms, accounting));
}

}  // namespace execd::jupyter
