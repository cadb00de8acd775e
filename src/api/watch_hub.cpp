#include "api/watch_hub.hpp"

#include <vector>

#include "exec/event.hpp"
#include "exec/event_log.hpp"
#include "files/file_watch.hpp"

namespace execd::api {

struct WatchHub::Session {
  std::string key;
  std::shared_ptr<exec::EventLog> log;
  std::unique_ptr<files::FileWatch> watch;
  size_t readers = 0;
  std::chrono::steady_clock::time_point idle_since = std::chrono::steady_clock::now();
};

namespace {

nlohmann::json event_fields(const files::WatchEvent& e) {
  nlohmann::json j = {{"path", e.path}};
  if (!e.kind.empty()) j["kind"] = e.kind;
  if (e.size >= 0) j["size"] = e.size;
  if (!e.from.empty()) j["from"] = e.from;
  return j;
}

/// Forwards reads to the watch's log; its destruction is the reader leaving.
class Lease final : public exec::EventSource {
 public:
  Lease(std::shared_ptr<exec::EventLog> log, std::function<void()> on_release)
      : log_(std::move(log)), on_release_(std::move(on_release)) {}
  ~Lease() override { on_release_(); }
  exec::ReadResult read(exec::Cursor& cursor, size_t max_events, std::chrono::milliseconds wait) override {
    return log_->read(cursor, max_events, wait);
  }

 private:
  std::shared_ptr<exec::EventLog> log_;
  std::function<void()> on_release_;
};

}  // namespace

WatchHub::WatchHub(files::PathResolver resolver, Options options)
    : resolver_(std::move(resolver)), options_(std::move(options)), janitor_([this] { janitor(); }) {}

WatchHub::~WatchHub() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  janitor_.join();
  std::map<std::string, std::shared_ptr<Session>> left;
  {
    std::lock_guard lock(mu_);
    left.swap(sessions_);
  }
  for (auto& [k, s] : left) {
    s->watch.reset();
    s->log->close(exec::events::custom("watch_end", {{"reason", "shutdown"}}));
  }
}

core::Result<WatchHub::Attached> WatchHub::attach(const std::string& path, bool recursive) {
  auto abs = resolver_.absolute(path);
  if (!abs) return abs.error();
  const std::string key = (recursive ? "r:" : "n:") + *abs;
  std::unique_lock lock(mu_);
  auto it = sessions_.find(key);
  bool fresh = false;
  if (it == sessions_.end() || it->second->log->is_closed()) {
    if (it != sessions_.end() && it->second->readers == 0) {
      sessions_.erase(it);
      it = sessions_.end();
    }
    if (sessions_.size() >= options_.max_watches) {
      return core::make_error(core::Errc::unavailable, "too many file watches (" + std::to_string(options_.max_watches) +
                                                           ", --max-watches); close one and retry");
    }
    auto s = std::make_shared<Session>();
    s->key = key;
    s->log = std::make_shared<exec::EventLog>(exec::EventLog::Options{256 * 1024, options_.spill_dir, 64ull << 20});
    std::weak_ptr<exec::EventLog> weak = s->log;
    files::FileWatch::Options wo;
    wo.recursive = recursive;
    wo.max_dirs = options_.max_dirs;
    wo.coalesce = options_.coalesce;
    auto w = files::FileWatch::start(
        resolver_, *abs, wo,
        [weak](std::vector<files::WatchEvent> events) {
          auto log = weak.lock();
          if (!log) return;
          for (const auto& e : events) log->append(exec::events::custom(e.type, event_fields(e)));
        },
        [weak](const std::string& reason) {
          if (auto log = weak.lock()) log->close(exec::events::custom("watch_end", {{"reason", reason}}));
        });
    if (!w) return w.error();
    s->log->append(exec::events::custom("watch", {{"path", *abs}, {"recursive", recursive}, {"watched_dirs", (*w)->watched_dirs()}}));
    s->watch = std::move(w).value();
    it = sessions_.insert_or_assign(key, std::move(s)).first;
    fresh = true;
  }
  auto session = it->second;
  ++session->readers;
  Attached out;
  out.fresh = fresh;
  std::weak_ptr<WatchHub> hub = weak_from_this();
  out.source = std::make_shared<Lease>(session->log, [hub, session] {
    if (auto h = hub.lock()) h->detach(*session);
  });
  return out;
}

void WatchHub::detach(Session& s) {
  std::lock_guard lock(mu_);
  if (s.readers > 0 && --s.readers == 0) s.idle_since = std::chrono::steady_clock::now();
}

void WatchHub::janitor() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, std::chrono::seconds(1));
    const auto now = std::chrono::steady_clock::now();
    std::vector<std::shared_ptr<Session>> retired;
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      const auto& s = it->second;
      if (s->readers == 0 && (s->log->is_closed() || now - s->idle_since >= options_.linger)) {
        retired.push_back(s);
        it = sessions_.erase(it);
      } else {
        ++it;
      }
    }
    if (retired.empty()) continue;
    // Stopping a watch joins its thread: not under the lock attach() needs.
    lock.unlock();
    for (auto& s : retired) {
      s->watch.reset();
      s->log->close(exec::events::custom("watch_end", {{"reason", "idle"}}));
    }
    retired.clear();
    lock.lock();
  }
}

}  // namespace execd::api
