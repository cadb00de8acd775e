#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string_view>
#include <thread>
#include <unordered_map>

#include "core/unique_fd.hpp"

namespace execd::process {

/// One thread that watches every child's pipes and pidfd (epoll, level-triggered) and
/// runs timers (timeouts, kill escalation). Callbacks run on that thread, one at a time,
/// so per-child state touched only from callbacks needs no lock. Every method is
/// thread-safe and may be called from a callback.
class Reactor {
 public:
  using FdCallback = std::function<void(uint32_t epoll_events)>;
  using TimerId = uint64_t;

  Reactor();
  ~Reactor();  ///< stops the thread; pending timers are dropped
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  /// Calls `cb` whenever `fd` is readable (or hung up). The caller keeps owning `fd` and
  /// must unwatch() it before closing it.
  void watch(int fd, FdCallback cb);
  void unwatch(int fd);
  /// Runs `fn` on the reactor thread after `delay`.
  TimerId after(std::chrono::milliseconds delay, std::function<void()> fn);
  void cancel(TimerId id);
  /// Scratch space for callbacks to read pipes into. Callbacks run one at a time on the
  /// reactor thread, so they share it instead of allocating a buffer per wake-up.
  [[nodiscard]] std::string_view read_into_scratch(int fd, ssize_t& n);

 private:
  void run();
  void wake();

  core::UniqueFd epoll_fd_;
  core::UniqueFd wake_fd_;
  std::mutex mu_;
  std::unordered_map<int, std::shared_ptr<FdCallback>> fds_;
  std::multimap<std::chrono::steady_clock::time_point, std::pair<TimerId, std::function<void()>>> timers_;
  TimerId next_timer_ = 1;
  bool stop_ = false;
  std::thread thread_;
  std::array<char, 64 * 1024> scratch_{};  // reactor thread only
};

}  // namespace execd::process
