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

// A sandbox id a caller may choose: a DNS label, so that every engine can name its
// instance after it (a directory, a container, a pod).
bool is_dns_label(const std::string& id) {
  if (id.empty() || id.size() > 63 || id.front() == '-' || id.back() == '-') return false;
  return std::all_of(id.begin(), id.end(), [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; });
}

// "750 ms", "4 s", "1 min 30 s": for the status message an operator reads.
std::string for_humans(std::chrono::milliseconds d) {
  const auto ms = d.count();
  if (ms < 1000) return std::to_string(ms) + " ms";
  const auto seconds = ms / 1000;
  if (seconds < 60) return std::to_string(seconds) + " s";
  return std::to_string(seconds / 60) + " min" + (seconds % 60 != 0 ? " " + std::to_string(seconds % 60) + " s" : "");
}

// The wait after the n-th failed remove (n >= 1): first, doubled per failure, capped.
std::chrono::milliseconds retry_delay(uint32_t failed, std::chrono::milliseconds first, std::chrono::milliseconds max) {
  auto d = std::max(first, std::chrono::milliseconds(1));
  for (uint32_t i = 1; i < failed && d < max; ++i) d *= 2;
  return std::min(d, max);
}

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
    const auto t = now();
    for (auto& r : *rows) {
      Entry e;
      e.record = std::move(r);
      // Given up under an earlier --remove-give-up that this configuration would not
      // have reached (or never gives up with): retried again.
      auto& removal = e.record.removal;
      if (removal && removal->has_given_up &&
          (options_.remove_give_up.count() == 0 || t - removal->first_failed_at < options_.remove_give_up)) {
        removal->has_given_up = false;
      }
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
  // Sandboxes on the overflow peer take none of this gateway's room.
  size_t n = 0;
  for (const auto& [id, e] : sandboxes_) {
    if (!is_final(e.record.sandbox.state) && is_local(e)) ++n;
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

core::Result<Sandbox> SandboxService::create(SandboxSpec spec, const std::string& requested_id) {
  if (auto r = check_metadata(spec.metadata); !r) return r.error();
  if (spec.timeout && spec.timeout->count() <= 0) {
    return make_error(Errc::invalid_argument, "timeout must be a positive number of seconds");
  }
  if (!requested_id.empty()) {
    if (!is_dns_label(requested_id)) {
      return make_error(Errc::invalid_argument, "X-Execd-Sandbox-Id: '" + requested_id.substr(0, 80) +
                                                    "' is not a DNS label ([a-z0-9-], 1-63 characters, no '-' at either end)");
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (find_locked(requested_id) != nullptr) {
      return make_error(Errc::conflict, "X-Execd-Sandbox-Id: a sandbox with id '" + requested_id + "' already exists");
    }
  }
  if (auto r = backend_->validate(spec); !r) return r.error();

  const bool poolable = requested_id.empty() && std::any_of(options_.pools.begin(), options_.pools.end(),
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
      relabel_later(id);  // the engine's copy learns the metadata and expiry
      return s;
    }
  }

  // Past this gateway's room, the overflow peer (when there is one) takes the sandbox.
  const std::string id_to_use = requested_id.empty() ? core::new_id() : requested_id;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (auto r = check_capacity_locked(); !r) {
      if (!options_.overflow) return r.error();
      lock.unlock();
      return create_on_peer(std::move(spec), id_to_use, r.error().message);
    }
  }
  if (auto r = backend_->has_room(spec); !r) {
    if (r.error().code != Errc::unavailable) return r.error();
    const std::string why = std::string(backend_->name()) + " backend: " + r.error().message;
    if (options_.overflow) return create_on_peer(std::move(spec), id_to_use, why);
    return make_error(Errc::capacity, why);
  }

  std::string id;
  Sandbox created;
  const std::string token = core::random_hex(32);
  const auto t = now();
  Placement reserved;
  if (!options_.replica_id.empty()) {
    // Replicas: the engine knows the sandbox and its owner before the 202, so a request
    // for it that nginx sends to another replica finds where to go.
    InstanceLabels labels;
    labels.owner_replica = options_.replica_id;
    labels.owner_url = options_.advertise_url;
    labels.access_token = token;
    labels.spec = spec;
    labels.created_at = t;
    if (spec.timeout) labels.expires_at = t + *spec.timeout;
    auto r = backend_->reserve(id_to_use, labels);
    if (!r) return r.error();
    reserved = *r;
  }
  auto unreserve = [&] {
    if (reserved.handle.empty()) return;
    if (auto r = backend_->remove(reserved); !r) spdlog::warn("sandbox {}: {}", id_to_use, r.error().message);
  };
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (stopping_) {
      lock.unlock();
      unreserve();
      return make_error(Errc::unavailable, "the gateway is shutting down");
    }
    // Checked again under the lock that inserts: fifty creates at once must not overshoot.
    if (auto r = check_capacity_locked(); !r) {
      lock.unlock();
      unreserve();
      if (!options_.overflow) return r.error();
      return create_on_peer(std::move(spec), id_to_use, r.error().message);
    }
    if (find_locked(id_to_use) != nullptr) {
      lock.unlock();
      unreserve();
      return make_error(Errc::conflict, "X-Execd-Sandbox-Id: a sandbox with id '" + id_to_use + "' already exists");
    }
    Entry e;
    e.accepted = Steady::now();
    e.is_starting = true;
    Sandbox& s = e.record.sandbox;
    s.id = id_to_use;
    s.backend = std::string(backend_->name());
    s.access_token = token;
    s.placement = reserved;
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

core::Result<Sandbox> SandboxService::get(const std::string& id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    const Entry* e = find_locked(id);
    if (e == nullptr || e->record.is_pooled) return make_error(Errc::not_found, "no sandbox with id '" + id + "'");
    if (is_local(*e) || is_final(e->record.sandbox.state)) return e->record.sandbox;
  }
  return refresh_from_peer(id);
}

core::Result<SandboxPage> SandboxService::list(const SandboxQuery& query) const {
  if (query.page == 0 || query.page_size == 0) {
    return make_error(Errc::invalid_argument, "page and pageSize start at 1");
  }
  // Replicas: the other replicas' live sandboxes, as the engine's labels describe them,
  // so a list through any replica shows every one (their rows stay with their owners).
  std::vector<Sandbox> others;
  if (!options_.replica_id.empty()) {
    auto instances = backend_->list();
    if (!instances) return instances.error();
    for (const auto& i : *instances) {
      if (!i.labels || i.labels->owner_replica.empty() || i.labels->owner_replica == options_.replica_id) continue;
      Sandbox s;
      s.id = i.sandbox_id;
      s.backend = std::string(backend_->name());
      s.spec = i.labels->spec;
      s.created_at = s.updated_at = s.last_transition_at = i.labels->created_at;
      s.expires_at = i.labels->expires_at;
      s.state = i.status.phase == InstanceStatus::Phase::paused     ? SandboxState::paused
                : i.status.phase == InstanceStatus::Phase::starting ? SandboxState::pending
                                                                    : SandboxState::running;
      s.reason = "replica";
      s.message = "served by replica " + i.labels->owner_replica;
      others.push_back(std::move(s));
    }
  }
  std::vector<const Sandbox*> matched;
  std::lock_guard<std::mutex> lock(mu_);
  auto consider = [&](const Sandbox& s) {
    if (!query.states.empty() && query.states.count(s.state) == 0) return;
    const bool all_match = std::all_of(query.metadata.begin(), query.metadata.end(), [&](const auto& kv) {
      auto it = s.spec.metadata.find(kv.first);
      return it != s.spec.metadata.end() && it->second == kv.second;
    });
    if (all_match) matched.push_back(&s);
  };
  for (const auto& [id, e] : sandboxes_) {
    if (!e.record.is_pooled) consider(e.record.sandbox);
  }
  for (const auto& s : others) {
    if (find_locked(s.id) == nullptr) consider(s);
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
  Backend* engine = backend_.get();
  bool is_retry = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Entry* e = find_locked(id);
    if (e == nullptr || e->record.is_pooled) return make_error(Errc::not_found, "no sandbox with id '" + id + "'");
    Sandbox& s = e->record.sandbox;
    if (e->record.removal) {
      // An earlier remove failed: try again now, and answer with what this attempt did.
      if (e->is_busy) {
        return make_error(Errc::conflict, "sandbox " + id + " is being removed again right now (after " +
                                              std::to_string(e->record.removal->attempts) +
                                              " failed attempts); retry when it settles");
      }
      is_retry = true;
    } else {
      if (is_final(s.state) || s.state == SandboxState::stopping) {
        return make_error(Errc::conflict, "sandbox " + id + " is already " + describe(s));
      }
      if (e->is_busy)
        return make_error(Errc::conflict, "sandbox " + id + " is " + describe(s) + "; retry when it settles");
      if (!is_local(*e)) {
        if (auto r = peer_configured_locked(*e); !r) return r.error();
        // The peer owns it: the row changes only once the peer has deleted it, so a peer
        // that is down leaves it as it was (502) and a retry works once it is back.
        engine = options_.overflow.get();
      } else {
        ++counters_.deletes;
        set_state_locked(*e, SandboxState::stopping, "user_delete", "deleted by request");
      }
      if (e->is_starting) {
        cv_.notify_all();  // a worker still waiting for a start slot ends it at once
        return {};         // otherwise its start-up worker ends it once the engine placed it
      }
    }
    e->is_busy = true;
    placement = s.placement;
  }
  auto removed = placement.handle.empty() ? core::Result<void>{} : engine->remove(placement);
  std::lock_guard<std::mutex> lock(mu_);
  Entry* e = find_locked(id);
  if (e == nullptr) return {};
  e->is_busy = false;
  if (!is_local(*e)) {
    if (!removed) return removed.error();
    ++counters_.deletes;
    set_state_locked(*e, SandboxState::terminated, "user_delete", "deleted by request (on peer gateway " +
                                                                      options_.overflow->url() + ")");
    return {};
  }
  if (!removed) {
    removal_failed_locked(*e, removed.error(), SandboxState::terminated, "user_delete", "deleted by request");
    return make_error(removed.error().code, e->record.sandbox.message);
  }
  if (is_retry) {
    // A delete's own failed remove was counted when it was asked for.
    if (e->record.removal && e->record.removal->end_reason != "user_delete") ++counters_.deletes;
    removal_done_locked(*e, SandboxState::terminated, "user_delete", "deleted by request");
    return {};
  }
  set_state_locked(*e, SandboxState::terminated, "user_delete", "deleted by request");
  return {};
}

core::Result<void> SandboxService::pause(const std::string& id) {
  Placement placement;
  Backend* engine = backend_.get();
  {
    std::lock_guard<std::mutex> lock(mu_);
    Entry* e = find_locked(id);
    if (e == nullptr || e->record.is_pooled) return make_error(Errc::not_found, "no sandbox with id '" + id + "'");
    if (e->record.sandbox.state != SandboxState::running || e->is_busy) {
      return make_error(Errc::conflict, "sandbox " + id + " is " + describe(e->record.sandbox) + "; only a Running sandbox can be paused");
    }
    if (!is_local(*e)) {
      if (auto r = peer_configured_locked(*e); !r) return r.error();
    }
    e->is_busy = true;
    set_state_locked(*e, SandboxState::pausing, "user_pause", "pausing");
    placement = e->record.sandbox.placement;
    if (!is_local(*e)) engine = options_.overflow.get();
  }
  auto paused = engine->pause(placement);
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
  Backend* engine = backend_.get();
  {
    std::lock_guard<std::mutex> lock(mu_);
    Entry* e = find_locked(id);
    if (e == nullptr || e->record.is_pooled) return make_error(Errc::not_found, "no sandbox with id '" + id + "'");
    if (e->record.sandbox.state != SandboxState::paused || e->is_busy) {
      return make_error(Errc::conflict, "sandbox " + id + " is " + describe(e->record.sandbox) + "; only a Paused sandbox can be resumed");
    }
    if (!is_local(*e)) {
      if (auto r = peer_configured_locked(*e); !r) return r.error();
    }
    e->is_busy = true;
    set_state_locked(*e, SandboxState::resuming, "user_resume", "resuming");
    placement = e->record.sandbox.placement;
    if (!is_local(*e)) engine = options_.overflow.get();
  }
  auto resumed = engine->resume(placement);
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
  std::unique_lock<std::mutex> lock(mu_);
  Entry* e = find_locked(id);
  if (e == nullptr || e->record.is_pooled) return make_error(Errc::not_found, "no sandbox with id '" + id + "'");
  Sandbox& s = e->record.sandbox;
  if (is_final(s.state) || s.state == SandboxState::stopping) {
    return make_error(Errc::conflict, "sandbox " + id + " is " + describe(s) + "; it cannot be renewed");
  }
  if (expires_at <= now()) {
    return make_error(Errc::invalid_argument, "expiresAt " + core::rfc3339_nano(expires_at) + " is not in the future");
  }
  if (!is_local(*e)) {
    // The peer enforces its own copy of expiresAt: it is renewed there first.
    if (auto r = peer_configured_locked(*e); !r) return r.error();
    const std::string peer_id = s.placement.handle;
    lock.unlock();
    auto renewed = options_.overflow->renew(peer_id, expires_at);
    if (!renewed) return renewed.error();
    lock.lock();
    Entry* again = find_locked(id);
    if (again != nullptr) {
      again->record.sandbox.expires_at = *renewed;
      again->record.sandbox.updated_at = now();
      persist_locked(*again);
    }
    return *renewed;
  }
  s.expires_at = expires_at;
  s.updated_at = now();
  persist_locked(*e);
  relabel_later(id);
  return expires_at;
}

core::Result<Sandbox> SandboxService::patch_metadata(const std::string& id,
                                                     const std::map<std::string, std::optional<std::string>>& patch) {
  std::unique_lock<std::mutex> lock(mu_);
  Entry* e = find_locked(id);
  if (e == nullptr || e->record.is_pooled) return make_error(Errc::not_found, "no sandbox with id '" + id + "'");
  Sandbox& s = e->record.sandbox;
  if (is_final(s.state)) return make_error(Errc::conflict, "sandbox " + id + " is " + describe(s) + "; its metadata is kept as it ended");
  if (!is_local(*e)) {
    if (auto r = peer_configured_locked(*e); !r) return r.error();
    auto checked = s.spec.metadata;  // refused here as the peer would, without a round trip
    if (auto r = apply_metadata_patch(checked, patch); !r) return r.error();
    const std::string peer_id = s.placement.handle;
    lock.unlock();
    auto seen = options_.overflow->patch_metadata(peer_id, patch);
    if (!seen) return seen.error();
    lock.lock();
    Entry* again = find_locked(id);
    if (again == nullptr) return make_error(Errc::not_found, "no sandbox with id '" + id + "'");
    return mirror_peer_locked(*again, seen);
  }
  if (auto r = apply_metadata_patch(s.spec.metadata, patch); !r) return r.error();
  s.updated_at = now();
  persist_locked(*e);
  relabel_later(id);
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
  if (!is_local(*e)) {
    if (auto r = peer_configured_locked(*e); !r) return r.error();
    a.is_on_peer = true;
    a.host = s.placement.host;
    a.port = s.placement.port;
    a.peer_id = s.placement.handle;
    a.peer_api_key = options_.overflow->api_key();
    return a;
  }
  a.host = s.placement.host;
  a.port = port == kExecdPort ? s.placement.port : port;
  a.access_token = s.access_token;
  return a;
}

core::Result<PeerEndpoint> SandboxService::peer_endpoint(const std::string& id, int port) const {
  std::string peer_id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const Entry* e = find_locked(id);
    if (e == nullptr || e->record.is_pooled) return make_error(Errc::not_found, "no sandbox with id '" + id + "'");
    if (is_local(*e)) return make_error(Errc::invalid_argument, "sandbox " + id + " runs on this gateway");
    if (auto r = peer_configured_locked(*e); !r) return r.error();
    peer_id = e->record.sandbox.placement.handle;
  }
  return options_.overflow->endpoint(peer_id, port, false);
}

// ---- the overflow peer ----

core::Result<void> SandboxService::peer_configured_locked(const Entry& e) const {
  if (options_.overflow) return {};
  const Placement& p = e.record.sandbox.placement;
  return make_error(Errc::bad_gateway, "sandbox " + e.record.sandbox.id + " was placed on the peer gateway at " + p.host +
                                           ":" + std::to_string(p.port) + ", and this gateway runs without --remote");
}

core::Result<Sandbox> SandboxService::create_on_peer(SandboxSpec spec, std::string id, const std::string& why) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return make_error(Errc::unavailable, "the gateway is shutting down");
  }
  auto placed = options_.overflow->create(id, spec, "");
  if (!placed) {
    const core::Error& e = placed.error();
    // Both sides full, or the peer down: say both what filled this gateway and why the
    // peer could not take it.
    return make_error(e.code == Errc::capacity || e.code == Errc::unavailable ? e.code : Errc::unavailable,
                      "this gateway is full (" + why + ") and the overflow peer could not take the sandbox: " +
                          e.message);
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (find_locked(placed->handle) != nullptr) {
    // Only a peer that ignored the requested id and reused one of ours could get here.
    return make_error(Errc::internal, "the overflow peer answered an id already in this table: " + placed->handle);
  }
  Entry e;
  e.accepted = Steady::now();
  Sandbox& s = e.record.sandbox;
  s.id = placed->handle;
  s.backend = std::string(options_.overflow->name());
  const auto t = now();
  s.created_at = s.updated_at = s.last_transition_at = t;
  if (spec.timeout) s.expires_at = t + *spec.timeout;
  s.spec = std::move(spec);
  s.state = SandboxState::pending;
  s.reason = "overflow";
  s.message = "placed on peer gateway " + options_.overflow->url() + " (" + why + ")";
  s.placement = *placed;
  persist_locked(e);
  Sandbox created = s;
  sandboxes_.emplace(s.id, std::move(e));
  ++counters_.creates;
  spdlog::info("sandbox {}: placed on peer gateway {} ({})", created.id, options_.overflow->url(), why);
  return created;
}

Sandbox SandboxService::mirror_peer_locked(Entry& e, const core::Result<Sandbox>& seen) {
  Sandbox& s = e.record.sandbox;
  if (!seen) {
    if (seen.error().code == Errc::not_found && !is_final(s.state)) {
      set_state_locked(e, SandboxState::failed, "instance_gone",
                       "the peer gateway " + options_.overflow->url() + " no longer has it");
    }
    return s;
  }
  const Sandbox& p = seen.value();
  const bool changed = p.state != s.state || p.reason != s.reason || p.message != s.message ||
                       p.expires_at != s.expires_at || p.spec.metadata != s.spec.metadata;
  if (!changed) return s;
  s.expires_at = p.expires_at;
  s.spec.metadata = p.spec.metadata;
  if (p.state != s.state) {
    set_state_locked(e, p.state, p.reason, p.message);  // persists
  } else {
    s.reason = p.reason;
    s.message = p.message;
    s.updated_at = now();
    persist_locked(e);
  }
  return s;
}

core::Result<Sandbox> SandboxService::refresh_from_peer(const std::string& id) {
  std::string peer_id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const Entry* e = find_locked(id);
    if (e == nullptr) return make_error(Errc::not_found, "no sandbox with id '" + id + "'");
    if (auto r = peer_configured_locked(*e); !r) return r.error();
    peer_id = e->record.sandbox.placement.handle;
  }
  auto seen = options_.overflow->describe(peer_id);
  if (!seen && seen.error().code != Errc::not_found) return seen.error();
  std::lock_guard<std::mutex> lock(mu_);
  Entry* e = find_locked(id);
  if (e == nullptr) return make_error(Errc::not_found, "no sandbox with id '" + id + "'");
  return mirror_peer_locked(*e, seen);
}

ServiceCounters SandboxService::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  ServiceCounters c = counters_;
  for (const auto& [id, e] : sandboxes_) {
    if (e.record.removal) ++c.removals_pending;
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
  InstanceLabels labels;
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
        if (!e->record.sandbox.placement.handle.empty()) {
          // Its reservation in the engine goes too (never while holding the lock).
          const Placement reserved = e->record.sandbox.placement;
          lock.unlock();
          if (auto r = backend_->remove(reserved); !r) spdlog::warn("sandbox {}: {}", id, r.error().message);
        }
      }
      return;
    }
    ++starts_in_flight_;
    spec = e->record.sandbox.spec;
    token = e->record.sandbox.access_token;
    labels = labels_locked(*e);
  }
  // The start timeout runs from here: the engine's start and execd's first answer.
  const Steady::time_point deadline = Steady::now() + options_.start_timeout;
  auto placed = backend_->create_labelled(id, spec, labels);
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
  std::lock_guard<std::mutex> lock(mu_);
  Entry* e = find_locked(id);
  if (e == nullptr) return;
  e->is_starting = false;
  if (!removed) {
    removal_failed_locked(*e, removed.error(), end_state, std::move(reason), std::move(message));
    return;
  }
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
  std::vector<std::string> moved;  // adopted by another replica while this one was away
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, instance] : live) {
      const Entry* e = find_locked(id);
      // A row waiting for a retried remove: the reaper's retries take its instance.
      if (e != nullptr && (!is_final(e->record.sandbox.state) || e->record.removal)) continue;
      if (!options_.replica_id.empty()) {
        // Replicas share the engine: only what is labelled ours is ours to remove.
        if (!instance.labels || instance.labels->owner_replica != options_.replica_id) continue;
        if (e == nullptr) {
          insert_adopted_locked(instance, "found labelled as this replica's at start, with no row (table lost)");
          continue;
        }
      }
      orphans.push_back(instance.placement);
    }
    for (auto& [id, e] : sandboxes_) {
      Sandbox& s = e.record.sandbox;
      if (is_final(s.state) || !is_local(e)) continue;  // the peer's are the peer's to reconcile
      auto it = live.find(id);
      if (it != live.end() && !is_mine(it->second)) {
        moved.push_back(id);
        continue;
      }
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
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& id : moved) {
      spdlog::info("reconcile: sandbox {} is served by replica {} now; its row here is dropped", id,
                   live[id].labels->owner_replica);
      if (auto r = store_->erase(id); !r) spdlog::error("reconcile: {}", r.error().message);
      sandboxes_.erase(id);
    }
  }
  for (const auto& p : orphans) {
    spdlog::info("reconcile: removing instance {} (no live row for it)", p.handle);
    if (auto r = backend_->remove(p); !r) spdlog::warn("reconcile: remove {}: {}", p.handle, r.error().message);
  }
  for (const auto& [id, placement] : gone) {
    auto removed = placement.handle.empty() ? core::Result<void>{} : backend_->remove(placement);
    std::lock_guard<std::mutex> lock(mu_);
    Entry* e = find_locked(id);
    if (e == nullptr) continue;
    const bool was_stopping = e->record.sandbox.state == SandboxState::stopping;
    const SandboxState end = was_stopping ? SandboxState::terminated : SandboxState::failed;
    std::string reason = was_stopping ? e->record.sandbox.reason : "instance_gone";
    std::string message =
        was_stopping ? "ended while the gateway was down" : "its instance was gone when the gateway started";
    if (!removed) {
      removal_failed_locked(*e, removed.error(), end, std::move(reason), std::move(message));
    } else {
      set_state_locked(*e, end, std::move(reason), std::move(message));
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
  Steady::time_point next_orphan_scan = Steady::now() + options_.replica_expiry_scan;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, options_.reap_interval, [this] { return stopping_; });
      if (stopping_) return;
    }
    try {
      if (!options_.replica_id.empty() && options_.replica_expiry_scan.count() > 0 &&
          Steady::now() >= next_orphan_scan) {
        adopt_expired_orphans();
        next_orphan_scan = Steady::now() + options_.replica_expiry_scan;
      }
      reap_once();
      refill_pools();
    } catch (const std::exception& e) {
      spdlog::error("sandbox reaper: {}", e.what());
    }
  }
}

void SandboxService::finish(const std::string& id, SandboxState state, const std::string& reason,
                            const std::string& message) {
  const auto removed = remove_instance(id);
  if (!removed) return;
  std::lock_guard<std::mutex> lock(mu_);
  Entry* e = find_locked(id);
  if (e == nullptr) return;
  e->is_busy = false;
  if (!*removed) {
    removal_failed_locked(*e, removed->error(), state, reason, message);
    return;
  }
  set_state_locked(*e, state, reason, message);
}

void SandboxService::removal_failed_locked(Entry& e, const core::Error& error, SandboxState state, std::string reason,
                                           std::string message) {
  const auto t = now();
  if (!e.record.removal) {
    PendingRemoval r;
    r.first_failed_at = t;
    r.end_state = state;
    r.end_reason = std::move(reason);
    r.end_message = std::move(message);
    e.record.removal = std::move(r);
  }
  PendingRemoval& r = *e.record.removal;
  ++r.attempts;
  ++counters_.remove_failures;
  r.last_error = error.message;
  const auto delay = retry_delay(r.attempts, options_.remove_retry_first, options_.remove_retry_max);
  r.next_attempt_at = t + delay;
  std::string next;
  if (options_.remove_give_up.count() > 0 && t - r.first_failed_at >= options_.remove_give_up) {
    r.has_given_up = true;
    next = "no more automatic attempts (--remove-give-up " + for_humans(options_.remove_give_up) +
           " passed); DELETE tries again";
  } else {
    next = "next attempt in " + for_humans(delay);
  }
  std::string status = "remove attempt " + std::to_string(r.attempts) + " failed: " + error.message + "; " + next;
  // One line per attempt, and attempts are backed off: never a tight loop in the log.
  spdlog::warn("sandbox {}: {}", e.record.sandbox.id, status);
  set_state_locked(e, SandboxState::failed, "remove_failed", std::move(status));
}

void SandboxService::removal_done_locked(Entry& e, SandboxState state, std::string reason, std::string message) {
  const uint32_t failed = e.record.removal ? e.record.removal->attempts : 0;
  e.record.removal.reset();
  message += " (removed on attempt " + std::to_string(failed + 1) + ", after " + std::to_string(failed) + " failed)";
  spdlog::info("sandbox {}: removed on attempt {}", e.record.sandbox.id, failed + 1);
  set_state_locked(e, state, std::move(reason), std::move(message));
}

std::optional<core::Result<void>> SandboxService::remove_instance(const std::string& id) {
  Placement placement;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const Entry* e = find_locked(id);
    if (e == nullptr) return std::nullopt;
    placement = e->record.sandbox.placement;
  }
  if (placement.handle.empty()) return core::Result<void>{};
  return backend_->remove(placement);
}

void SandboxService::retry_remove(const std::string& id) {
  const auto found = remove_instance(id);
  if (!found) return;
  const core::Result<void>& removed = *found;
  std::lock_guard<std::mutex> lock(mu_);
  Entry* e = find_locked(id);
  if (e == nullptr) return;
  e->is_busy = false;
  if (!e->record.removal) return;
  const PendingRemoval end = *e->record.removal;
  if (!removed) {
    removal_failed_locked(*e, removed.error(), end.end_state, end.end_reason, end.end_message);
    return;
  }
  removal_done_locked(*e, end.end_state, end.end_reason, end.end_message);
}

void SandboxService::reap_once() {
  const auto t = now();
  std::vector<std::string> expired;
  std::vector<std::pair<std::string, Placement>> to_inspect;
  std::vector<std::string> on_peer;
  std::vector<std::string> retries;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, e] : sandboxes_) {
      Sandbox& s = e.record.sandbox;
      if (e.record.removal && !e.record.removal->has_given_up && !e.is_busy && e.record.removal->next_attempt_at <= t) {
        e.is_busy = true;
        retries.push_back(id);
        continue;
      }
      if (is_final(s.state) || e.is_busy || e.is_starting || s.state == SandboxState::stopping) continue;
      if (!is_local(e)) {
        // The peer expires and reaps its own; the row follows what the peer says.
        if (options_.overflow) on_peer.push_back(id);
        continue;
      }
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
  // On workers: a remove can take seconds (a cgroup's kill and rmdir wait), and expiry
  // must not wait behind a sandbox that will not go.
  for (const auto& id : retries) launch([this, id] { retry_remove(id); });
  for (const auto& id : expired) finish(id, SandboxState::terminated, "ttl_expiry", "expired and removed");
  for (const auto& id : on_peer) {
    auto r = refresh_from_peer(id);
    if (!r && r.error().code == Errc::bad_gateway) {
      // The peer is down: asked again next round (not once per sandbox, each waiting
      // for its timeout, while local sandboxes wait to be expired); requests meanwhile
      // answer 502.
      spdlog::debug("overflow peer: {}", r.error().message);
      break;
    }
  }

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
      // One whose remove failed stays until a retry removes its remains.
      if (e.record.is_pooled && is_final(e.record.sandbox.state) && !e.record.removal) failed.push_back(id);
    }
    for (const auto& id : failed) {
      spdlog::warn("warm pool: member {} ended ({}: {})", id, sandboxes_[id].record.sandbox.reason,
                   sandboxes_[id].record.sandbox.message);
      if (auto r = store_->erase(id); !r) spdlog::error("warm pool: {}", r.error().message);
      sandboxes_.erase(id);
    }
  }
}

// ---- replicas ----

InstanceLabels SandboxService::labels_locked(const Entry& e) const {
  const Sandbox& s = e.record.sandbox;
  InstanceLabels l;
  l.owner_replica = options_.replica_id;
  l.owner_url = options_.advertise_url;
  l.access_token = s.access_token;
  l.spec = s.spec;
  l.created_at = s.created_at;
  l.expires_at = s.expires_at;
  return l;
}

void SandboxService::relabel_later(const std::string& id) {
  launch([this, id] {
    Placement placement;
    InstanceLabels labels;
    {
      std::lock_guard<std::mutex> lock(mu_);
      const Entry* e = find_locked(id);
      // One being removed has no labels left to keep (its record goes with it).
      if (e == nullptr || !is_local(*e) || e->record.sandbox.placement.handle.empty() ||
          is_final(e->record.sandbox.state) || e->record.sandbox.state == SandboxState::stopping) {
        return;
      }
      placement = e->record.sandbox.placement;
      labels = labels_locked(*e);
    }
    if (auto r = backend_->relabel(placement, labels); !r) {
      spdlog::warn("sandbox {}: the engine's labels were not updated: {}", id, r.error().message);
    }
  });
}

bool SandboxService::is_mine(const Instance& instance) const {
  if (options_.replica_id.empty() || !instance.labels || instance.labels->owner_replica.empty()) return true;
  return instance.labels->owner_replica == options_.replica_id;
}

void SandboxService::insert_adopted_locked(const Instance& instance, const std::string& why) {
  if (!instance.labels) return;
  const InstanceLabels& l = *instance.labels;
  Entry e;
  e.accepted = Steady::now();
  Sandbox& s = e.record.sandbox;
  s.id = instance.sandbox_id;
  s.backend = std::string(backend_->name());
  s.spec = l.spec;
  s.access_token = l.access_token;
  s.created_at = l.created_at;
  s.expires_at = l.expires_at;
  s.placement = instance.placement;
  s.updated_at = s.last_transition_at = now();
  s.reason = "adopted";
  s.message = why;
  const bool starting = instance.status.phase == InstanceStatus::Phase::starting;
  s.state = starting ? SandboxState::pending
                     : instance.status.phase == InstanceStatus::Phase::paused ? SandboxState::paused : SandboxState::running;
  e.is_starting = starting;
  persist_locked(e);
  spdlog::info("sandbox {}: adopted ({}; {})", s.id, to_string(s.state), why);
  const std::string id = s.id;
  sandboxes_.emplace(id, std::move(e));
  if (starting) {
    launch([this, id] {
      Placement placement;
      std::string token;
      {
        std::lock_guard<std::mutex> lock(mu_);
        const Entry* found = find_locked(id);
        if (found == nullptr) return;
        placement = found->record.sandbox.placement;
        token = found->record.sandbox.access_token;
      }
      await_start(id, placement, token, Steady::now() + options_.start_timeout);
    });
  }
}

core::Result<SandboxOwner> SandboxService::owner_of(const std::string& id) {
  if (options_.replica_id.empty()) return SandboxOwner{};
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (find_locked(id) != nullptr) return SandboxOwner{};
  }
  auto found = backend_->find(id);
  if (!found) return found.error();
  if (!*found || !(*found)->labels) return SandboxOwner{};
  const Instance& instance = **found;
  if (is_mine(instance)) {
    std::lock_guard<std::mutex> lock(mu_);
    if (find_locked(id) == nullptr) {
      insert_adopted_locked(instance, "labelled as this replica's, with no row here");
    }
    return SandboxOwner{};
  }
  return SandboxOwner{false, instance.labels->owner_replica, instance.labels->owner_url};
}

core::Result<SandboxOwner> SandboxService::adopt(const std::string& id, const std::string& why) {
  auto found = backend_->find(id);
  if (!found) return found.error();
  if (!*found) return make_error(Errc::not_found, "no sandbox with id '" + id + "'");
  Instance instance = std::move(**found);
  if (!instance.labels) {
    return make_error(Errc::conflict, "sandbox " + id + " carries no labels in the engine; it cannot be adopted");
  }
  const std::string previous = instance.labels->owner_replica;
  instance.labels->owner_replica = options_.replica_id;
  instance.labels->owner_url = options_.advertise_url;
  if (auto r = backend_->relabel(instance.placement, *instance.labels); !r) return r.error();
  // No lock is shared between replicas: two that adopt at once both write, the last
  // write wins, and the loser defers to it.
  auto again = backend_->find(id);
  if (again && *again && (*again)->labels && !is_mine(**again)) {
    return SandboxOwner{false, (*again)->labels->owner_replica, (*again)->labels->owner_url};
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (find_locked(id) == nullptr) {
    insert_adopted_locked(instance, "adopted from replica " + previous + " (" + why + ")");
  }
  return SandboxOwner{};
}

void SandboxService::adopt_expired_orphans() {
  auto instances = backend_->list();
  if (!instances) {
    spdlog::debug("replica expiry scan: {}", instances.error().message);
    return;
  }
  const auto t = now();
  std::map<std::string, bool> reachable;  // owner URL -> answered: one probe per replica per scan
  for (const Instance& i : *instances) {
    if (!i.labels || is_mine(i) || !i.labels->expires_at || *i.labels->expires_at > t) continue;
    if (i.status.phase == InstanceStatus::Phase::gone) continue;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (find_locked(i.sandbox_id) != nullptr) continue;
    }
    const std::string& url = i.labels->owner_url;
    auto known = reachable.find(url);
    if (known == reachable.end()) known = reachable.emplace(url, is_replica_reachable(url)).first;
    // A live owner expires its own: only a silent one's are taken (its reaper would
    // never run; nginx sends no request that would trigger an adoption).
    if (known->second) continue;
    auto adopted = adopt(i.sandbox_id, "expired at " + core::rfc3339_nano(*i.labels->expires_at) +
                                           " while its replica " + i.labels->owner_replica + " did not answer");
    if (!adopted) {
      spdlog::warn("sandbox {}: expired on unreachable replica {}, not adopted: {}", i.sandbox_id,
                   i.labels->owner_replica, adopted.error().message);
    }
  }
}

bool SandboxService::is_replica_reachable(const std::string& url) {
  const auto t = Steady::now();
  auto endpoint = http::ClientEndpoint::parse(url);
  if (!endpoint) return false;
  const std::string key = endpoint->host + ":" + std::to_string(endpoint->port);
  {
    std::lock_guard<std::mutex> lock(probes_mu_);
    auto it = reachable_until_.find(key);
    if (it != reachable_until_.end() && it->second > t) return true;
  }
  http::ClientRequest probe;
  probe.target = "/health";
  probe.timeout = std::chrono::milliseconds(1000);
  // Any answer (a 401 included: the probe carries no key) shows a replica serving.
  const bool answered = http::send_request(*endpoint, probe).ok();
  std::lock_guard<std::mutex> lock(probes_mu_);
  if (answered) {
    reachable_until_[key] = t + options_.replica_probe_ttl;
  } else {
    reachable_until_.erase(key);
  }
  return answered;
}

void SandboxService::forget_replica(const std::string& url) {
  auto endpoint = http::ClientEndpoint::parse(url);
  if (!endpoint) return;
  std::lock_guard<std::mutex> lock(probes_mu_);
  reachable_until_.erase(endpoint->host + ":" + std::to_string(endpoint->port));
}

}  // namespace execd::gateway
