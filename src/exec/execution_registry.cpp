#include "exec/execution_registry.hpp"

#include "core/id.hpp"

namespace execd::exec {

ExecutionRegistry::ExecutionRegistry(EventLog::Options log_options, std::chrono::seconds retention)
    : log_options_(std::move(log_options)), retention_(retention) {}

std::shared_ptr<Execution> ExecutionRegistry::create(const std::string& kind, const std::string& id) {
  const auto now = std::chrono::steady_clock::now();
  if (now - last_sweep_ > std::chrono::seconds(1)) sweep();
  std::lock_guard<std::mutex> lock(mu_);
  std::string key = id;
  if (key.empty() || by_id_.count(key) != 0) key = core::new_id();
  auto e = std::make_shared<Execution>(key, kind, log_options_);
  if (observer_) {
    e->log()->set_on_close([observer = observer_, kind, started = now](const Event& terminal) {
      observer(kind, terminal, std::chrono::steady_clock::now() - started);
    });
  }
  by_id_[key] = Entry{e, {}};
  return e;
}

void ExecutionRegistry::set_finish_observer(FinishObserver observer) {
  std::lock_guard<std::mutex> lock(mu_);
  observer_ = std::move(observer);
}

std::shared_ptr<Execution> ExecutionRegistry::find(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second.execution;
}

void ExecutionRegistry::remove(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  by_id_.erase(id);
}

size_t ExecutionRegistry::sweep() {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  last_sweep_ = now;
  size_t evicted = 0;
  for (auto it = by_id_.begin(); it != by_id_.end();) {
    Entry& entry = it->second;
    if (entry.execution->log()->is_closed()) {
      if (entry.closed_seen == std::chrono::steady_clock::time_point{}) entry.closed_seen = now;
      if (now - entry.closed_seen >= retention_) {
        it = by_id_.erase(it);
        ++evicted;
        continue;
      }
    }
    ++it;
  }
  return evicted;
}

size_t ExecutionRegistry::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return by_id_.size();
}

}  // namespace execd::exec
