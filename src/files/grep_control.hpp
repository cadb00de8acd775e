#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace execd::files {

/// What the threads of one content search share to stop together: the client's stop flag,
/// the deadline, and a halt any of them may call. The first reason given is kept.
/// Thread-safe.
class GrepControl {
 public:
  enum class Reason { none, cancelled, timeout, finished, failed };
  using Clock = std::chrono::steady_clock;

  GrepControl(const std::atomic<bool>* stop, Clock::time_point deadline) : stop_(stop), deadline_(deadline) {}

  /// false once halted, the stop flag is set (cancelled) or the deadline passed (timeout).
  bool keep_going() {
    if (halted_.load(std::memory_order_relaxed)) return false;
    if (stop_ != nullptr && stop_->load(std::memory_order_relaxed)) return halt(Reason::cancelled);
    if (Clock::now() >= deadline_) return halt(Reason::timeout);
    return true;
  }

  /// Stops every thread of the search; returns false (for `return halt(...)`).
  bool halt(Reason why) {
    auto none = static_cast<int>(Reason::none);
    reason_.compare_exchange_strong(none, static_cast<int>(why));
    halted_.store(true, std::memory_order_relaxed);
    return false;
  }

  Reason reason() const { return static_cast<Reason>(reason_.load()); }

 private:
  const std::atomic<bool>* stop_;
  Clock::time_point deadline_;
  std::atomic<bool> halted_{false};
  std::atomic<int> reason_{static_cast<int>(Reason::none)};
};

/// The bytes a whole search may still read (GrepQuery::max_total_bytes), taken by every
/// thread before each read and given back when a read came up short. Thread-safe.
class ByteBudget {
 public:
  explicit ByteBudget(uint64_t total) : left_(total) {}

  /// Up to `want` bytes, fewer (maybe 0) when the budget runs out.
  uint64_t take(uint64_t want) {
    uint64_t left = left_.load(std::memory_order_relaxed);
    uint64_t got = 0;
    do got = left < want ? left : want;
    while (!left_.compare_exchange_weak(left, left - got, std::memory_order_relaxed));
    return got;
  }

  void give_back(uint64_t n) { left_.fetch_add(n, std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> left_;
};

}  // namespace execd::files
