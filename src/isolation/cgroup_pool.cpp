#include "isolation/cgroup_pool.hpp"

#include <algorithm>
#include <filesystem>

#include <spdlog/spdlog.h>

namespace execd::isolation {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kFirstBackoff = std::chrono::milliseconds(20);
constexpr auto kMaxBackoff = std::chrono::milliseconds(1000);
// A failed mkdir (the root removed, a host limit on groups) is not retried in a loop.
constexpr auto kRefillBackoff = std::chrono::seconds(1);

void remove_tree(const std::string& dir) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (ec) spdlog::warn("isolation: cannot remove workspace {}: {}", dir, ec.message());
}

}  // namespace

CgroupPool::CgroupPool(std::shared_ptr<CgroupRoot> root, Options options)
    : root_(std::move(root)), options_(options) {
  if (root_->version() == 0) return;  // nothing to make or remove: no thread either
  worker_ = std::thread([this] { run(); });
}

CgroupPool::~CgroupPool() {
  close();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  // What the thread left: removed here, with the usual wait for reaped tasks.
  for (auto& g : spares_) {
    if (auto r = g->remove(); !r) spdlog::warn("isolation: {}", r.error().message);
  }
  for (auto& r : retired_) {
    if (auto rm = r.group->remove(); !rm) spdlog::warn("isolation: {}", rm.error().message);
  }
  for (auto& [dir, when] : dirs_) remove_tree(dir);
}

core::Result<std::unique_ptr<Cgroup>> CgroupPool::take(const std::string& name) {
  std::unique_ptr<Cgroup> group;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!spares_.empty()) {
      group = std::move(spares_.front());
      spares_.pop_front();
    }
    // The last spare gone: refill now, the next execution would make its own otherwise.
    refill_after_ = spares_.empty() ? Clock::now() : std::max(refill_after_, Clock::now() + options_.quiet);
  }
  cv_.notify_all();
  if (!group) return root_->create(name);
  if (group->version() == 1) {
    // Only the name is lost when this fails: the group is as good under its spare name.
    if (auto r = group->rename(name); !r) spdlog::debug("isolation: {}", r.error().message);
  }
  return group;
}

void CgroupPool::retire(std::unique_ptr<Cgroup> group) {
  if (!group) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_ && worker_.joinable() && retired_.size() < options_.max_retired) {
      const auto now = Clock::now();
      retired_.push_back({std::move(group), now + options_.quiet, kFirstBackoff, now});
    }
  }
  if (group) {
    if (auto r = group->remove(); !r) spdlog::warn("isolation: {}", r.error().message);
    return;
  }
  cv_.notify_all();
}

void CgroupPool::retire_directory(std::string dir) {
  if (dir.empty()) return;
  bool queued = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_ && worker_.joinable() && dirs_.size() < options_.max_retired) {
      dirs_.emplace_back(dir, Clock::now() + options_.quiet);
      queued = true;
    }
  }
  if (!queued) {
    remove_tree(dir);
    return;
  }
  cv_.notify_all();
}

void CgroupPool::close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    closed_ = true;
  }
  // A make in progress finishes before this returns; later ones see closed_.
  std::lock_guard<std::mutex> making(make_mu_);
}

bool CgroupPool::settle(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return settled_cv_.wait_for(lock, timeout, [this] {
    return !working_ && retired_.empty() && dirs_.empty() && (closed_ || !worker_.joinable() || spares_.size() >= options_.size);
  });
}

size_t CgroupPool::spare_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return spares_.size();
}

std::unique_ptr<Cgroup> CgroupPool::make_spare() {
  std::lock_guard<std::mutex> making(make_mu_);
  unsigned long long n = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return nullptr;
    n = ++seq_;
  }
  auto group = root_->create("spare-" + std::to_string(n));
  if (!group) {
    spdlog::warn("isolation: cannot make a spare cgroup: {}", group.error().message);
    return nullptr;
  }
  // Opened now so that the execution's child finds them open (they survive a rename).
  if (auto fds = (*group)->procs_fds(); !fds) {
    spdlog::warn("isolation: {}", fds.error().message);
    return nullptr;  // the Cgroup's destructor removes it
  }
  return std::move(group).value();
}

void CgroupPool::run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    const auto now = Clock::now();
    // Refill first: the next execution waits for a spare, nobody waits for a removal.
    if (!closed_ && spares_.size() < options_.size && now >= refill_after_) {
      working_ = true;
      lock.unlock();
      auto group = make_spare();
      lock.lock();
      working_ = false;
      if (group) {
        spares_.push_back(std::move(group));
      } else if (!closed_) {
        refill_after_ = Clock::now() + kRefillBackoff;
      }
      continue;
    }
    const auto ready = std::find_if(retired_.begin(), retired_.end(), [now](const Retired& r) { return r.next_try <= now; });
    if (ready != retired_.end()) {
      Retired r = std::move(*ready);
      retired_.erase(ready);
      working_ = true;
      lock.unlock();
      // No wait on EBUSY here: a killed task not reaped yet (the daemon's reaper collects
      // orphans within a second) is retried later rather than blocking the refill.
      auto removed = r.group->remove({}, std::chrono::milliseconds(0));
      if (!removed && !r.warned && Clock::now() - r.since > std::chrono::seconds(5)) {
        spdlog::warn("isolation: still retrying: {}", removed.error().message);
        r.warned = true;
      }
      lock.lock();
      working_ = false;
      if (!removed) {
        r.next_try = Clock::now() + r.backoff;
        r.backoff = std::min(r.backoff * 2, kMaxBackoff);
        // Behind the others: one stuck group does not hold up the removal of the rest.
        retired_.push_back(std::move(r));
      }
      continue;
    }
    if (!dirs_.empty() && dirs_.front().second <= now) {
      const std::string dir = std::move(dirs_.front().first);
      dirs_.pop_front();
      working_ = true;
      lock.unlock();
      remove_tree(dir);
      lock.lock();
      working_ = false;
      continue;
    }
    const bool full = closed_ || spares_.size() >= options_.size;
    if (full && retired_.empty() && dirs_.empty()) settled_cv_.notify_all();
    auto wake = Clock::time_point::max();
    if (!retired_.empty()) {
      for (const auto& r : retired_) wake = std::min(wake, r.next_try);
    }
    if (!dirs_.empty()) wake = std::min(wake, dirs_.front().second);
    if (!full) wake = std::min(wake, refill_after_);
    if (wake == Clock::time_point::max()) {
      cv_.wait(lock);
    } else {
      cv_.wait_until(lock, wake);
    }
  }
}

}  // namespace execd::isolation
