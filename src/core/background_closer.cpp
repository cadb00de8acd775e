#include "core/background_closer.hpp"

namespace execd::core {

BackgroundCloser::~BackgroundCloser() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void BackgroundCloser::close(UniqueFd fd) {
  if (!fd.valid()) return;
  {
    std::lock_guard lock(mu_);
    queue_.push_back(std::move(fd));
    if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
  }
  cv_.notify_one();
}

void BackgroundCloser::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    std::vector<UniqueFd> batch;
    batch.swap(queue_);
    if (batch.empty() && stopping_) return;
    lock.unlock();
    batch.clear();  // the closes
    lock.lock();
  }
}

}  // namespace execd::core
