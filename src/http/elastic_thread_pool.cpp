#include "http/elastic_thread_pool.hpp"

#include <thread>

#include <spdlog/spdlog.h>

namespace execd::http {

ElasticThreadPool::ElasticThreadPool(size_t min_threads, size_t max_threads, std::chrono::seconds idle_timeout)
    : min_threads_(min_threads), max_threads_(max_threads), idle_timeout_(idle_timeout) {}

ElasticThreadPool::~ElasticThreadPool() { shutdown(); }

void ElasticThreadPool::enqueue(std::function<void()> fn) {
  bool spawn = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back(std::move(fn));
    if (idle_ < jobs_.size() && threads_ < max_threads_) {
      ++threads_;
      spawn = true;
    }
  }
  if (spawn) {
    try {
      std::thread([this] { worker(); }).detach();
    } catch (const std::system_error& e) {
      // Out of threads: the job waits for a running worker instead.
      spdlog::warn("http: cannot start another worker thread ({}); request queued", e.what());
      std::lock_guard<std::mutex> lock(mu_);
      --threads_;
    }
  }
  work_cv_.notify_one();
}

void ElasticThreadPool::worker() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    ++idle_;
    const bool woke = work_cv_.wait_for(lock, idle_timeout_, [&] { return !jobs_.empty() || shutdown_; });
    --idle_;
    if (jobs_.empty()) {
      if (shutdown_ || (!woke && threads_ > min_threads_)) break;
      continue;
    }
    auto fn = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    try {
      fn();
    } catch (const std::exception& e) {
      spdlog::error("http: connection task failed: {}", e.what());
    } catch (...) {
      spdlog::error("http: connection task failed with an unknown exception");
    }
    lock.lock();
  }
  --threads_;
  exit_cv_.notify_all();
}

void ElasticThreadPool::shutdown() {
  std::unique_lock<std::mutex> lock(mu_);
  shutdown_ = true;
  work_cv_.notify_all();
  exit_cv_.wait(lock, [&] { return threads_ == 0; });
}

}  // namespace execd::http
