#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>

#include <httplib.h>

namespace execd::http {

/// httplib's task queue, sized by demand: a thread per connection being served, up to
/// `max_threads`; idle threads exit after `idle_timeout` (keeping `min_threads`), so an
/// idle daemon holds a handful of threads while a thousand open SSE streams get a
/// thousand. Connections beyond the budget wait in order for a free thread.
class ElasticThreadPool final : public httplib::TaskQueue {
 public:
  ElasticThreadPool(size_t min_threads, size_t max_threads, std::chrono::seconds idle_timeout);
  ~ElasticThreadPool() override;

  void enqueue(std::function<void()> fn) override;
  /// Runs what is queued, then waits for every worker to finish.
  void shutdown() override;

 private:
  void worker();

  const size_t min_threads_;
  const size_t max_threads_;
  const std::chrono::seconds idle_timeout_;
  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable exit_cv_;
  std::deque<std::function<void()>> jobs_;
  size_t threads_ = 0;
  size_t idle_ = 0;
  bool shutdown_ = false;
};

}  // namespace execd::http
