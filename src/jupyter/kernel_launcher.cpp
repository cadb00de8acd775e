#include "jupyter/kernel_launcher.hpp"

#include <thread>

#include <spdlog/spdlog.h>

namespace execd::jupyter {

KernelLauncher::KernelLauncher(std::shared_ptr<process::ChildReaper> reaper, Options options)
    : reaper_(std::move(reaper)), options_(std::move(options)) {
  concurrency_ = options_.concurrency > 0 ? options_.concurrency : std::max(1u, std::thread::hardware_concurrency());
}

KernelLauncher::Counts KernelLauncher::counts() const {
  return Counts{starts_.load(std::memory_order_relaxed), failures_.load(std::memory_order_relaxed),
                restarts_.load(std::memory_order_relaxed)};
}

core::Result<std::unique_ptr<Kernel>> KernelLauncher::start(const KernelSpec& spec, const std::string& cwd,
                                                            const isolation::Limits& limits) {
  {
    std::unique_lock<std::mutex> lock(mu_);
    const uint64_t ticket = next_ticket_++;
    // Skips tickets whose owners gave up, so they do not hold the line.
    const auto advance = [&] {
      while (abandoned_.count(serving_) != 0) abandoned_.erase(serving_++);
    };
    advance();
    const bool got = cv_.wait_for(lock, options_.timeout, [&] { return ticket == serving_ && running_ < concurrency_; });
    if (!got) {
      abandoned_[ticket] = true;
      advance();
      cv_.notify_all();
      return core::make_error(core::Errc::unavailable,
                              "kernel " + spec.name + " could not start: " + std::to_string(running_) +
                                  " kernels were starting for the whole " + std::to_string(options_.timeout.count()) +
                                  " ms (--kernel-start-timeout; --kernel-start-concurrency " + std::to_string(concurrency_) + ")");
    }
    ++serving_;
    advance();
    ++running_;
  }
  cv_.notify_all();
  Kernel::Launch launch{cwd, options_.runtime_base, reaper_, options_.timeout, options_.isolator, limits, options_.envs_file};
  auto k = Kernel::start(spec, launch);
  {
    std::lock_guard<std::mutex> lock(mu_);
    --running_;
  }
  (k ? starts_ : failures_).fetch_add(1, std::memory_order_relaxed);
  cv_.notify_all();
  return k;
}

}  // namespace execd::jupyter
