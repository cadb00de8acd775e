#include "gateway/sandbox_service.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "core/clock.hpp"
#include "core/id.hpp"
#include "gateway/metadata_rules.hpp"
#include "http/client.hpp"

namespace execd::gateway {
namespace {

using core::Errc;
using core::make_error;
using Steady = std::chrono::steady_clock;

TimePoint now() { return std::chrono::system_clock::now(); }

std::string describe(const Sandbox& s) { return std::string(to_string(s.state)); }

}  // namespace

SandboxService::SandboxService(std::shared_ptr<Backend> backend, std::unique_ptr<SandboxStore> store,
                               ServiceOptions options)
    : backend_(std::move(backend)), store_(std::move(store)), options_(std::move(options)) {
  counters_.backend = std::string(backend_->name());
  counters_.has_cap = options_.max_sandboxes != 0;
  start_slots_ = options_.start_concurrency != 0
                     ? options_.start_concurrency
                     : std::max<size_t>(4, 2 * std::max(1u, std::thread::hardware_concurrency()));
}

SandboxService::~SandboxService() { stop(); }

core::Result<void> SandboxService::start() {
  for (const auto& pool : options_.pools) {
    SandboxSpec spec;
    spec.image = pool.image;
    if (auto r = backend_->validate(spec); !r) return make_error(r.error().code, "--pool " + pool.image + ": " + r.error().message);
  }
  auto rows = store_->load_all();
  if (!rows) return rows.error();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& r : *rows) {
      Entry e;
      e.record = std::move(r);
      e.accepted = Steady::now();
      const std::string id = e.record.sandbox.id;
      sandboxes_.emplace(id, std::move(e));
    }
  }
  reconcile();
  started_ = true;
  reaper_ = std::thread([this] { reap_loop(); });
  return {};
}

void SandboxService::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (reaper_.joinable()) reaper_.join();
  std::list<Worker> workers;
  {
    std::lock_guard<std::mutex> lock(workers_mu_);
    workers.swap(workers_);
  }
  for (auto& w : workers) {
    if (w.thread.joinable()) w.thread.join();
  }
  // Idle pool members are no one's: they go with this gateway (the next one refills).
  std::vector<std::pair<std::string, Placement>> pooled;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, e] : sandboxes_) {
      if (e.record.is_pooled) pooled.emplace_back(id, e.record.sandbox.placement);
    }
  }
  for (const auto& [id, placement] : pooled) {
    if (!placement.handle.empty()) {
      if (auto r = backend_->remove(placement); !r) spdlog::warn("warm pool: remove {}: {}", id, r.error().message);
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (auto r = store_->erase(id); !r) spdlog::error("warm pool: {}", r.error().message);
    sandboxes_.erase(id);
  }
}

// ---- the table, under mu_ ----

SandboxService::Entry* SandboxService::find_locked(const std::string& id) {
  auto it = sandboxes_.find(id);
  return it == sandboxes_.end() ? nullptr : &it->second;
}

const SandboxService::Entry* SandboxService::find_locked(const std::string& id) const {
  auto it = sandboxes_.find(id);
  return it == sandboxes_.end() ? nullptr : &it->second;
}

void SandboxService::persist_locked(const Entry& e) {
  if (auto r = store_->put(e.record); !r) {
    // The in-memory table stays right; the row catches up at the next transition.
    spdlog::error("sandbox {}: {}", e.record.sandbox.id, r.error().message);
  }
}

void SandboxService::set_state_locked(Entry& e, SandboxState state, std::string reason, std::string message) {
  Sandbox& s = e.record.sandbox;
  const auto t = now();
  if (s.state != state) {
    s.last_transition_at = t;
    if (state == SandboxState::failed) ++counters_.failures;
    spdlog::info("sandbox {}: {} -> {} ({}{}{})", s.id, to_string(s.state), to_string(state), reason,
                 message.empty() ? "" : ": ", message);
  }
  s.state = state;
  s.reason = std::move(reason);
  s.message = std::move(message);
  s.updated_at = t;
  persist_locked(e);
}

size_t SandboxService::live_count_locked() const {
  size_t n = 0;
  for (const auto& [id, e] : sandboxes_) {
    if (!is_final(e.record.sandbox.state)) ++n;
  }
  return n;
}

core::Result<void> SandboxService::check_capacity_locked() const {
  if (options_.max_sandboxes == 0) return {};
  const size_t live = live_count_locked();
  if (live < options_.max_sandboxes) return {};
  return make_error(Errc::capacity, "max-sandboxes reached: " + std::to_string(live) + " of " +
                                        std::to_string(options_.max_sandboxes) +
                                        " sandboxes are live (warm-pool members included); delete one or retry later");
}

void SandboxService::record_latency_locked(Steady::duration d) {
  const double seconds = std::chrono::duration<double>(d).count();
  for (size_t i = 0; i < ServiceCounters::kLatencyBounds.size(); ++i) {
    if (seconds <= ServiceCounters::kLatencyBounds[i]) ++counters_.latency_buckets[i];
  }
  ++counters_.latency_count;
  counters_.latency_sum_seconds += seconds;
}

// ---- requests ----

bool SandboxService::pool_matches(const PoolSpec& pool, const SandboxSpec& spec) const {
  // A pool member was started with nothing but its image: a create may add metadata and
  // a timeout (set at claim), nothing that would have changed how it was started.
  const ResourceLimits none{};
  return spec.image == pool.image && spec.entrypoint.empty() && spec.env.empty() &&
         spec.limits.cpu_millis == none.cpu_millis && spec.limits.memory_bytes == none.memory_bytes &&
         spec.limits.max_pids == none.max_pids && spec.limits.disk_bytes == none.disk_bytes;
}

core::Result<Sandbox> SandboxService::create(SandboxSpec spec) {
  if (auto r = check_metadata(spec.metadata); !r) return r.error();
  if (spec.timeout && spec.timeout->count() <= 0) {
    return make_error(Errc::invalid_argument, "timeout must be a positive number of seconds");
  }
  if (auto r = backend_->validate(spec); !r) return r.error();

  const bool poolable = std::any_of(options_.pools.begin(), options_.pools.end(),
                                    [&](const PoolSpec& p) { return pool_matches(p, spec); });
  if (poolable) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, e] : sandboxes_) {
      Sandbox& s = e.record.sandbox;
      if (!e.record.is_pooled || s.state != SandboxState::running || e.is_busy || s.spec.image != spec.image) continue;
      const auto claimed_at = Steady::now();
      const auto t = now();
      e.record.is_pooled = false;
      s.spec.metadata = spec.metadata;
      s.spec.timeout = spec.timeout;
      s.created_at = t;
      s.last_transition_at = t;
      s.expires_at.reset();
      if (spec.timeout) s.expires_at = t + *spec.timeout;
      set_state_locked(e, SandboxState::running, "pool_claim", "handed out from the warm pool");
      ++counters_.creates;
      ++counters_.pool_claims;
      record_latency_locked(Steady::now() - claimed_at);
      cv_.notify_all();  // the reaper refills the pool
      return s;
    }
  }

  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto r = check_capacity_locked(); !r) return r.error();
  }
  if (auto r = backend_->has_room(spec); !r) {
    if (r.error().code != Errc::unavailable) return r.error();
    return make_error(Errc::capacity, std::string(backend_->name()) + " backend: " + r.error().message);
  }

  std::string id;
  Sandbox created;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return make_error(Errc::unavailable, "the gateway is shutting down");
    // Checked again under the lock that inserts: fifty creates at once must not overshoot.
    if (auto r = check_capacity_locked(); !r) return r.error();
    Entry e;
    e.accepted = Steady::now();
    e.is_starting = true;
    Sandbox& s = e.record.sandbox;
    s.id = core::new_id();
    s.backend = std::string(backend_->name());
    s.access_token = core::random_hex(32);
    const auto t = now();
    s.created_at = t;
    s.updated_at = t;
    s.last_transition_at = t;
    if (spec.timeout) s.expires_at = t + *spec.timeout;
    s.spec = std::move(spec);
    s.state = SandboxState::pending;
    s.reason = "provisioning";
    s.message = "starting the sandbox";
    id = s.id;
    persist_locked(e);
    created = s;
    sandboxes_.emplace(id, std::move(e));
    ++counters_.creates;
  }
  launch([this, id] { start_sandbox(id); });
  return created;
}

core::Result<Sandbox> SandboxService::get(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  const Entry* e = find_locked(id);
  if (e == nullptr || e->record.is_pooled) return make_error(Errc::not_found, "no sandbox with id '" + id + "'");
  return e->record.sandbox;
}

core::Result<SandboxPage> SandboxService::list(const SandboxQuery& query) const {
  if (query.page == 0 || query.page_size == 0) {
    return make_error(Errc::invalid_argument, "page and pageSize start at 1");
  }
  std::vector<const Sandbox*> matched;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [id, e] : sandboxes_) {
    if (e.record.is_pooled) continue;
    const Sandbox& s = e.record.sandbox;
    if (!query.states.empty() && query.states.count(s.state) == 0) continue;
    const bool all_match = std::all_of(query.metadata.begin(), query.metadata.end(), [&](const auto& kv) {
      auto it = s.spec.metadata.find(kv.first);
      return it != s.spec.metadata.end() && it->second == kv.second;
    });
    if (all_match) matched.push_back(&s);
  }
  std::sort(matched.begin(), matched.end(), [](const Sandbox* a, const Sandbox* b) {
    return a->created_at != b->created_at ? a->created_at > b->created_at : a->id < b->id;
  });
  SandboxPage page;
  page.total_items = matched.size();
  const size_t first = (query.page - 1) * query.page_size;
  for (size_t i = first; i < matched.size() && i < first + query.page_size; ++i) page.items.push_back(*matched[i]);
  return page;
}

core::Result<void> SandboxService::remove(const std::string& id) {
  Placement placement;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Entry* e = find_locked(id);
    if (e == nullptr || e->record.is_pooled) return make_error(Errc::not_found, "no sandbox with id '" + id + "'");
    Sandbox& s = e->record.sandbox;
    if (is_final(s.state) || s.state == SandboxState::stopping) {
      return make_error(Errc::conflict, "sandbox " + id + " is already " + describe(s));
    }
    if (e->is_busy) return make_error(Errc::conflict, "sandbox " + id + " is " + describe(s) + "; retry when it settles");
    ++counters_.deletes;
    set_state_locked(*e, SandboxState::stopping, "user_delete", "deleted by request");
    if (e->is_starting) {
      cv_.notify_all();  // a worker still waiting for a start slot ends it at once
      return {};         // otherwise its start-up worker ends it once the engine placed it
    }
    e->is_busy = true;
    placement = s.placement;
  }
  auto removed = placement.handle.empty() ? core::Result<void>{} : backend_->remove(placement);
  std::lock_guard<std::mutex> lock(mu_);
  Entry* e = find_locked(id);
  if (e == nullptr) return {};
  e->is_busy = false;
  if (!removed) {
    set_state_locked(*e, SandboxState::failed, "remove_failed", removed.error().message);
    return removed.error();
  }
  set_state_locked(*e, SandboxState::terminated, "user_delete", "deleted by request");
  return {};
}

core::Result<void> SandboxService::pause(const std::string& id) {
  Placement placement;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Entry* e = find_locked(id);
    if (e == nullptr || e->record.is_pooled) return make_error(Errc::not_found, "no sandbox with id '" + id + "'");
    if (e->record.sandbox.state != SandboxState::running || e->is_busy) {
      return make_error(Errc::conflict, "sandbox " + id + " is " + describe(e->record.sandbox) + "; only a Running sandbox can be paused");
    }
    e->is_busy = true;
    set_state_locked(*e, SandboxState::pausing, "user_pause", "pausing");
    placement = e->record.sandbox.placement;
  }
  auto paused = backend_->pause(placement);
  std::lock_guard<std::mutex> lock(mu_);
  Entry* e = find_locked(id);
  if (e == nullptr) return {};
  e->is_busy = false;
  if (e->record.sandbox.state != SandboxState::pausing) return {};  // ended meanwhile (reaper)
  if (!paused) {
    set_state_locked(*e, SandboxState::running, "pause_failed", paused.error().message);
    return paused.error();
  }
  set_state_locked(*e, SandboxState::paused, "user_pause", "paused by request");
  return {};
}

core::Result<void> SandboxService::resume(const std::string& id) {
  Placement placement;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Entry* e = find_locked(id);
    if (e == nullptr || e->record.is_pooled) return make_error(Errc::not_found, "no sandbox with id '" + id + "'");
    if (e->record.sandbox.state != SandboxState::paused || e->is_busy) {
      return make_error(Errc::conflict, "sandbox " + id + " is " + describe(e->record.sandbox) + "; only a Paused sandbox can be resumed");
    }
    e->is_busy = true;
    set_state_locked(*e, SandboxState::resuming, "user_resume", "resuming");
    placement = e->record.sandbox.placement;
  }
  auto resumed = backend_->resume(placement);
  std::lock_guard<std::mutex> lock(mu_);
  Entry* e = find_locked(id);
  if (e == nullptr) return {};
  e->is_busy = false;
  if (e->record.sandbox.state != SandboxState::resuming) return {};
  if (!resumed) {
    set_state_locked(*e, SandboxState::paused, "resume_failed", resumed.error().message);
    return resumed.error();
  }
  set_state_locked(*e, SandboxState::running, "user_resume", "resumed by request");
  return {};
}

core::Result<TimePoint> SandboxService::renew(const std::string& id, TimePoint expires_at) {
  std::lock_guard<std::mutex> lock(mu_);
  Entry* e = find_locked(id);
  if (e == nullptr || e->record.is_pooled) return make_error(Errc::not_found, "no sandbox with id '" + id + "'");
  Sandbox& s = e->record.sandbox;
  if (is_final(s.state) || s.state == SandboxState::stopping) {
    return make_error(Errc::conflict, "sandbox " + id + " is " + describe(s) + "; it cannot be renewed");
  }
  if (expires_at <= now()) {
    return make_error(Errc::invalid_argument, "expiresAt " + core::rfc3339_nano(expires_at) + " is not in the future");
  }
  s.expires_at = expires_at;
  s.updated_at = now();
  persist_locked(*e);
  return expires_at;
}

core::Result<Sandbox> SandboxService::patch_metadata(const std::string& id,
                                                     const std::map<std::string, std::optional<std::string>>& patch) {
  std::lock_guard<std::mutex> lock(mu_);
  Entry* e = find_locked(id);
  if (e == nullptr || e->record.is_pooled) return make_error(Errc::not_found, "no sandbox with id '" + id + "'");
  Sandbox& s = e->record.sandbox;
  if (is_final(s.state)) return make_error(Errc::conflict, "sandbox " + id + " is " + describe(s) + "; its metadata is kept as it ended");
  if (auto r = apply_metadata_patch(s.spec.metadata, patch); !r) return r.error();
  s.updated_at = now();
  persist_locked(*e);
  return s;
}

core::Result<SandboxAddress> SandboxService::address(const std::string& id, int port) const {
  std::lock_guard<std::mutex> lock(mu_);
  const Entry* e = find_locked(id);
  if (e == nullptr || e->record.is_pooled) return make_error(Errc::not_found, "no sandbox with id '" + id + "'");
  const Sandbox& s = e->record.sandbox;
  if (is_final(s.state) || s.state == SandboxState::stopping) {
    return make_error(Errc::conflict, "sandbox " + id + " is " + describe(s) + "; it has no endpoints");
  }
  if (s.placement.handle.empty() || s.state == SandboxState::pending) {
    return make_error(Errc::conflict, "sandbox " + id + " is Pending; its endpoints exist once it is Running");
  }
  SandboxAddress a;
  a.host = s.placement.host;
  a.port = port == kExecdPort ? s.placement.port : port;
  a.access_token = s.access_token;
  return a;
}

ServiceCounters SandboxService::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  ServiceCounters c = counters_;
  for (const auto& [id, e] : sandboxes_) {
    if (e.record.is_pooled) {
      if (e.record.sandbox.state == SandboxState::running) ++c.pooled;
      continue;
    }
    ++c.by_state[e.record.sandbox.state];
  }
  if (options_.max_sandboxes != 0) {
    const size_t live = live_count_locked();
    c.capacity_left = live >= options_.max_sandboxes ? 0 : options_.max_sandboxes - live;
  }
  return c;
}

// ---- background work ----

void SandboxService::launch(std::function<void()> work) {
  auto done = std::make_shared<std::atomic<bool>>(false);
  std::lock_guard<std::mutex> lock(workers_mu_);
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (it->done->load()) {
      it->thread.join();
      it = workers_.erase(it);
    } else {
      ++it;
    }
  }
  workers_.push_back(Worker{std::thread([work = std::move(work), done] {
                              try {
                                work();
                              } catch (const std::exception& e) {
                                spdlog::error("sandbox worker: {}", e.what());
                              } catch (...) {
                                spdlog::error("sandbox worker: unknown exception");
                              }
                              done->store(true);
                            }),
                            done});
}

void SandboxService::start_sandbox(const std::string& id) {
  SandboxSpec spec;
  std::string token;
  {
    // Engines start only so many at once well (fifty bwrap+execd starts on two cores
    // time each other out): the rest wait here, Pending, for a start slot.
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] {
      const Entry* e = find_locked(id);
      return stopping_ || e == nullptr || e->record.sandbox.state != SandboxState::pending ||
             starts_in_flight_ < start_slots_;
    });
    Entry* e = find_locked(id);
    if (e == nullptr) return;
    if (stopping_ || e->record.sandbox.state != SandboxState::pending) {
      e->is_starting = false;
      if (e->record.sandbox.state == SandboxState::stopping) {
        set_state_locked(*e, SandboxState::terminated, "user_delete", "deleted before it started");
      }
      return;
    }
    ++starts_in_flight_;
    spec = e->record.sandbox.spec;
    token = e->record.sandbox.access_token;
  }
  // The start timeout runs from here: the engine's start and execd's first answer.
  const Steady::time_point deadline = Steady::now() + options_.start_timeout;
  auto placed = backend_->create(id, spec, token);
  {
    std::lock_guard<std::mutex> lock(mu_);
    --starts_in_flight_;
  }
  cv_.notify_all();
  if (!placed) {
    std::lock_guard<std::mutex> lock(mu_);
    Entry* e = find_locked(id);
    if (e == nullptr) return;
    e->is_starting = false;
    if (e->record.sandbox.state == SandboxState::stopping) {
      set_state_locked(*e, SandboxState::terminated, "user_delete", "deleted before it started");
    } else {
      set_state_locked(*e, SandboxState::failed, "provision_failed", placed.error().message);
    }
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    Entry* e = find_locked(id);
    if (e == nullptr) return;
    e->record.sandbox.placement = *placed;
    persist_locked(*e);
  }
  await_start(id, *placed, token, deadline);
}

void SandboxService::await_start(const std::string& id, const Placement& placed, const std::string& token,
                                 Steady::time_point deadline) {
  auto ready = wait_ready(id, placed, token, deadline);
  SandboxState end_state = SandboxState::running;
  std::string reason;
  std::string message;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Entry* e = find_locked(id);
    if (e == nullptr) return;
    if (stopping_ && e->record.sandbox.state == SandboxState::pending) {
      e->is_starting = false;  // the next gateway reconciles it
      return;
    }
    if (e->record.sandbox.state == SandboxState::stopping) {
      end_state = SandboxState::terminated;
      reason = "user_delete";
      message = "deleted by request";
    } else if (!ready) {
      end_state = SandboxState::failed;
      reason = ready.error().code == Errc::unavailable ? "provision_timeout" : "runtime_error";
      message = ready.error().message;
    } else {
      e->is_starting = false;
      set_state_locked(*e, SandboxState::running, e->record.is_pooled ? "pool_ready" : "ready",
                       "execd answers /ping");
      if (!e->record.is_pooled) record_latency_locked(Steady::now() - e->accepted);
      return;
    }
  }
  // Failed or deleted while starting: nothing of it may stay behind.
  auto removed = backend_->remove(placed);
  if (!removed) spdlog::warn("sandbox {}: remove after a failed start: {}", id, removed.error().message);
  std::lock_guard<std::mutex> lock(mu_);
  Entry* e = find_locked(id);
  if (e == nullptr) return;
  e->is_starting = false;
  set_state_locked(*e, end_state, reason, message);
}

core::Result<void> SandboxService::wait_ready(const std::string& id, const Placement& placement,
                                              const std::string& token, Steady::time_point deadline) {
  http::ClientEndpoint endpoint;
  endpoint.host = placement.host;
  endpoint.port = placement.port;
  http::ClientRequest ping;
  ping.target = "/ping";
  ping.headers = {{"X-EXECD-ACCESS-TOKEN", token}};
  auto pause = std::chrono::milliseconds(5);
  std::string last_error = "no answer yet";
  auto next_inspect = Steady::now() + std::chrono::milliseconds(200);
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      const Entry* e = find_locked(id);
      if (stopping_ || e == nullptr || e->record.sandbox.state != SandboxState::pending) {
        return make_error(Errc::conflict, "start-up abandoned");
      }
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Steady::now());
    if (left.count() <= 0) {
      return make_error(Errc::unavailable, "execd did not answer /ping within " +
                                               std::to_string(options_.start_timeout.count()) + " ms (" + last_error + ")");
    }
    ping.timeout = std::min(left, options_.ping_timeout);
    auto answer = http::send_request(endpoint, ping);
    if (answer && answer->status == 200) return {};
    last_error = answer ? "/ping answered " + std::to_string(answer->status) : answer.error().message;
    if (Steady::now() >= next_inspect) {
      // An instance that already exited will never answer: fail now, with its reason.
      auto status = backend_->inspect(placement);
      if (status && (status->phase == InstanceStatus::Phase::exited || status->phase == InstanceStatus::Phase::gone)) {
        return make_error(Errc::internal, "the sandbox exited before execd answered: " +
                                              (status->message.empty() ? std::string("no reason given") : status->message));
      }
      next_inspect = Steady::now() + std::chrono::milliseconds(500);
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, pause, [this] { return stopping_; });
    pause = std::min(pause * 2, std::chrono::milliseconds(100));
  }
}

void SandboxService::reconcile() {
  auto instances = backend_->list();
  if (!instances) {
    spdlog::error("reconcile: cannot list the {} backend's instances: {}; the table is served as stored",
                  backend_->name(), instances.error().message);
    return;
  }
  std::map<std::string, Instance> live;
  for (auto& i : *instances) live[i.sandbox_id] = std::move(i);

  std::vector<Placement> orphans;
  std::vector<std::pair<std::string, Placement>> gone;  // row says alive, engine disagrees
  std::vector<std::string> pending;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, instance] : live) {
      const Entry* e = find_locked(id);
      if (e == nullptr || is_final(e->record.sandbox.state)) orphans.push_back(instance.placement);
    }
    for (auto& [id, e] : sandboxes_) {
      Sandbox& s = e.record.sandbox;
      if (is_final(s.state)) continue;
      auto it = live.find(id);
      const bool alive = it != live.end() && it->second.status.phase != InstanceStatus::Phase::exited &&
                         it->second.status.phase != InstanceStatus::Phase::gone;
      if (!alive || s.state == SandboxState::stopping) {
        gone.emplace_back(id, it != live.end() ? it->second.placement : s.placement);
        continue;
      }
      s.placement = it->second.placement;
      if (s.state == SandboxState::pending) {
        e.is_starting = true;
        e.accepted = Steady::now();
        pending.push_back(id);
        persist_locked(e);
      } else if (it->second.status.phase == InstanceStatus::Phase::paused) {
        set_state_locked(e, SandboxState::paused, s.state == SandboxState::paused ? s.reason : "reconciled",
                         s.state == SandboxState::paused ? s.message : "found paused at gateway start");
      } else if (s.state != SandboxState::running) {
        set_state_locked(e, SandboxState::running, "reconciled", "found running at gateway start");
      } else {
        persist_locked(e);
      }
    }
  }
  for (const auto& p : orphans) {
    spdlog::info("reconcile: removing instance {} (no live row for it)", p.handle);
    if (auto r = backend_->remove(p); !r) spdlog::warn("reconcile: remove {}: {}", p.handle, r.error().message);
  }
  for (const auto& [id, placement] : gone) {
    if (!placement.handle.empty()) {
      if (auto r = backend_->remove(placement); !r) spdlog::warn("reconcile: remove {}: {}", id, r.error().message);
    }
    std::lock_guard<std::mutex> lock(mu_);
    Entry* e = find_locked(id);
    if (e == nullptr) continue;
    if (e->record.sandbox.state == SandboxState::stopping) {
      set_state_locked(*e, SandboxState::terminated, e->record.sandbox.reason, "ended while the gateway was down");
    } else {
      set_state_locked(*e, SandboxState::failed, "instance_gone", "its instance was gone when the gateway started");
    }
  }
  // Rows caught mid-start: wait for their execd again, under a fresh start timeout.
  for (const auto& id : pending) {
    launch([this, id] {
      Placement placement;
      std::string token;
      {
        std::lock_guard<std::mutex> lock(mu_);
        const Entry* e = find_locked(id);
        if (e == nullptr) return;
        placement = e->record.sandbox.placement;
        token = e->record.sandbox.access_token;
      }
      await_start(id, placement, token, Steady::now() + options_.start_timeout);
    });
  }
}

void SandboxService::reap_loop() {
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, options_.reap_interval, [this] { return stopping_; });
      if (stopping_) return;
    }
    try {
      reap_once();
      refill_pools();
    } catch (const std::exception& e) {
      spdlog::error("sandbox reaper: {}", e.what());
    }
  }
}

void SandboxService::finish(const std::string& id, SandboxState state, const std::string& reason,
                            const std::string& message) {
  Placement placement;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Entry* e = find_locked(id);
    if (e == nullptr) return;
    placement = e->record.sandbox.placement;
  }
  auto removed = placement.handle.empty() ? core::Result<void>{} : backend_->remove(placement);
  std::lock_guard<std::mutex> lock(mu_);
  Entry* e = find_locked(id);
  if (e == nullptr) return;
  e->is_busy = false;
  if (!removed) {
    set_state_locked(*e, SandboxState::failed, "remove_failed", removed.error().message);
    return;
  }
  set_state_locked(*e, state, reason, message);
}

void SandboxService::reap_once() {
  const auto t = now();
  std::vector<std::string> expired;
  std::vector<std::pair<std::string, Placement>> to_inspect;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, e] : sandboxes_) {
      Sandbox& s = e.record.sandbox;
      if (is_final(s.state) || e.is_busy || e.is_starting || s.state == SandboxState::stopping) continue;
      if (!e.record.is_pooled && s.expires_at && *s.expires_at <= t) {
        e.is_busy = true;
        ++counters_.expirations;
        set_state_locked(e, SandboxState::stopping, "ttl_expiry", "expired at " + core::rfc3339_nano(*s.expires_at));
        expired.push_back(id);
      } else if (!s.placement.handle.empty()) {
        to_inspect.emplace_back(id, s.placement);
      }
    }
  }
  for (const auto& id : expired) finish(id, SandboxState::terminated, "ttl_expiry", "expired and removed");

  for (const auto& [id, placement] : to_inspect) {
    auto status = backend_->inspect(placement);
    if (!status) continue;  // the engine did not answer: ask again next round
    if (status->phase != InstanceStatus::Phase::exited && status->phase != InstanceStatus::Phase::gone) continue;
    {
      std::lock_guard<std::mutex> lock(mu_);
      Entry* e = find_locked(id);
      // A request may have moved it meanwhile (a delete or pause in flight): theirs.
      if (e == nullptr || e->is_busy || e->is_starting || is_final(e->record.sandbox.state) ||
          e->record.sandbox.state == SandboxState::stopping) {
        continue;
      }
      e->is_busy = true;
    }
    const std::string why = status->message.empty() ? "its instance is gone" : status->message;
    finish(id, SandboxState::failed, status->phase == InstanceStatus::Phase::gone ? "instance_gone" : "instance_exited",
           why);
  }

  auto pruned = store_->prune_final_before(t - options_.terminated_retention);
  if (!pruned) {
    spdlog::error("sandbox reaper: {}", pruned.error().message);
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& id : *pruned) sandboxes_.erase(id);
}

void SandboxService::refill_pools() {
  for (const auto& pool : options_.pools) {
    std::vector<std::string> started;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
      size_t have = 0;
      for (const auto& [id, e] : sandboxes_) {
        if (e.record.is_pooled && !is_final(e.record.sandbox.state) && e.record.sandbox.spec.image == pool.image) ++have;
      }
      while (have < pool.size && check_capacity_locked().ok()) {
        Entry e;
        e.accepted = Steady::now();
        e.is_starting = true;
        e.record.is_pooled = true;
        Sandbox& s = e.record.sandbox;
        s.id = core::new_id();
        s.backend = std::string(backend_->name());
        s.access_token = core::random_hex(32);
        s.created_at = s.updated_at = s.last_transition_at = now();
        s.spec.image = pool.image;
        s.reason = "provisioning";
        s.message = "warm-pool member starting";
        persist_locked(e);
        started.push_back(s.id);
        sandboxes_.emplace(s.id, std::move(e));
        ++have;
      }
    }
    for (const auto& id : started) launch([this, id] { start_sandbox(id); });
  }
  // Pool members that failed to start are dropped from the table at once (they are no
  // one's to see), so the next round starts fresh ones.
  std::vector<std::string> failed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, e] : sandboxes_) {
      if (e.record.is_pooled && is_final(e.record.sandbox.state)) failed.push_back(id);
    }
    for (const auto& id : failed) {
      spdlog::warn("warm pool: member {} ended ({}: {})", id, sandboxes_[id].record.sandbox.reason,
                   sandboxes_[id].record.sandbox.message);
      if (auto r = store_->erase(id); !r) spdlog::error("warm pool: {}", r.error().message);
      sandboxes_.erase(id);
    }
  }
}

}  // namespace execd::gateway
