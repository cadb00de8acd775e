#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/result.hpp"
#include "gateway/backend.hpp"
#include "gateway/backends/remote_backend.hpp"
#include "gateway/sandbox.hpp"
#include "gateway/sandbox_store.hpp"

namespace execd::gateway {

/// A warm pool: keep `size` sandboxes of `image` created, Running and unclaimed.
struct PoolSpec {
  std::string image;
  size_t size = 0;
};

struct ServiceOptions {
  size_t max_sandboxes = 0;                          ///< live sandboxes (pool included); 0: no cap
  std::chrono::milliseconds start_timeout{30000};    ///< engine start -> execd answering /ping
  size_t start_concurrency = 0;                      ///< engine starts at once (the rest wait Pending); 0: 2 per core, at least 4
  std::chrono::milliseconds terminated_retention{std::chrono::hours(1)};  ///< final rows kept this long
  std::chrono::milliseconds reap_interval{500};      ///< how often expiry, liveness and pruning run
  std::chrono::milliseconds ping_timeout{2000};      ///< one /ping attempt
  /// A remove the backend refused is retried by the reaper after remove_retry_first,
  /// the wait doubling per failed attempt up to remove_retry_max (then every that long),
  /// until remove_give_up after the first failure (0: forever; a DELETE still retries).
  std::chrono::milliseconds remove_retry_first{1000};
  std::chrono::milliseconds remove_retry_max{60000};
  std::chrono::milliseconds remove_give_up{0};
  std::vector<PoolSpec> pools;
  /// A peer gateway new sandboxes overflow to when this one is full (--max-sandboxes or
  /// the backend's has_room); null: a full gateway answers 503 CAPACITY.
  std::shared_ptr<RemoteBackend> overflow;
  /// This replica's name and URL among replicas sharing one engine (stored with every
  /// instance it owns); empty: a gateway alone, which owns everything its engine runs.
  std::string replica_id;
  std::string advertise_url;
  /// How long a replica that answered counts as reachable without asking again.
  std::chrono::milliseconds replica_probe_ttl{2000};
  /// How often a replica looks in the engine for other replicas' sandboxes past their
  /// expiry whose owner does not answer (a dead replica's sessions that get no request
  /// would otherwise never expire); 0: never.
  std::chrono::milliseconds replica_expiry_scan{5000};
};

/// Who serves a sandbox among replicas: this one, or the one the engine's labels name.
struct SandboxOwner {
  bool is_here = true;
  std::string replica_id;  ///< when elsewhere
  std::string url;         ///< its --advertise-url
};

/// One page of GET /sandboxes.
struct SandboxQuery {
  std::set<SandboxState> states;                  ///< empty: any state; else any of these (OR)
  std::map<std::string, std::string> metadata;    ///< every pair must match (AND)
  size_t page = 1;                                ///< from 1
  size_t page_size = 20;
};
struct SandboxPage {
  std::vector<Sandbox> items;  ///< newest first
  size_t total_items = 0;
};

/// Where a sandbox's port answers, and the header that opens it.
struct SandboxAddress {
  std::string host;
  int port = 0;
  std::string access_token;  ///< for X-EXECD-ACCESS-TOKEN
  /// Set for a sandbox placed on the overflow peer: host/port are the peer gateway's,
  /// reached at /v1/sandboxes/{peer_id}/proxy/{port} with the peer's API key.
  bool is_on_peer = false;
  std::string peer_id;
  std::string peer_api_key;
};

/// Prometheus-bound numbers, as a plain snapshot (the metrics route renders them).
struct ServiceCounters {
  static constexpr std::array<double, 12> kLatencyBounds{0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                         0.5,   1,    2.5,   5,    10,  30};
  uint64_t creates = 0;    ///< accepted creates (pool claims included)
  uint64_t deletes = 0;    ///< user deletes
  uint64_t failures = 0;   ///< sandboxes that became Failed
  uint64_t expirations = 0;
  uint64_t pool_claims = 0;
  uint64_t remove_failures = 0;  ///< backend removes that failed (each retry counted)
  /// create -> Running, seconds: count per bucket of kLatencyBounds (cumulative, as
  /// Prometheus wants: bucket i counts samples <= bound i), plus the total count and sum.
  std::array<uint64_t, 12> latency_buckets{};
  uint64_t latency_count = 0;
  double latency_sum_seconds = 0;
  std::map<SandboxState, size_t> by_state;  ///< listed sandboxes (pool members not counted)
  size_t pooled = 0;                        ///< idle warm-pool members, Running (ready to claim)
  size_t removals_pending = 0;              ///< rows whose remains wait for a retried remove
  size_t capacity_left = 0;                 ///< max_sandboxes minus live ones (0 when no cap: see has_cap)
  bool has_cap = false;
  std::string backend;                      ///< Backend::name()
};

/// The sandbox lifecycle over one Backend and the table. Request threads call create,
/// get, list, remove, pause, resume, renew, patch_metadata and address; each returns
/// promptly: a create answers Pending and a worker thread starts the sandbox and waits
/// for its execd's /ping. One reaper thread expires sandboxes at their expiresAt, notices
/// instances that died, retries removes the backend refused (`Failed`, `remove_failed`,
/// with backoff: ServiceOptions::remove_retry_*; the row, kept in the store, is never
/// pruned before a remove succeeds), prunes old final rows and refills warm pools. The service lock
/// guards the in-memory table (the store is written under it, so rows and memory agree)
/// and is never held across a Backend call. start() reconciles the table with
/// Backend::list() first; stop() joins every thread (sandboxes keep running: a restarted
/// gateway serves them again).
class SandboxService {
 public:
  SandboxService(std::shared_ptr<Backend> backend, std::unique_ptr<SandboxStore> store, ServiceOptions options);
  ~SandboxService();
  SandboxService(const SandboxService&) = delete;
  SandboxService& operator=(const SandboxService&) = delete;

  /// Loads the table, reconciles it with the engine, starts the reaper. Call once.
  core::Result<void> start();
  /// Stops the reaper, waits for start-up workers (each bounded by the start timeout)
  /// and removes idle warm-pool members. Claimed sandboxes keep running.
  void stop();

  /// Validates (backend), checks capacity (capacity: --max-sandboxes or the engine's
  /// own room, the message naming what ran out), stores Pending and starts it in the
  /// background; or hands out a matching warm-pool member, already Running. Past
  /// capacity with an overflow peer, the sandbox is placed there instead (a blocking
  /// call to the peer; unavailable naming the peer when it cannot be reached) and stored
  /// with backend "remote". `requested_id` (a DNS label: [a-z0-9-], 1-63, not starting or
  /// ending with '-') is the id to use, as a gateway placing a sandbox on its peer asks;
  /// conflict when taken; empty: a fresh id.
  core::Result<Sandbox> create(SandboxSpec spec, const std::string& requested_id = "");
  /// A sandbox on the overflow peer is read from the peer (bad_gateway while it is down).
  core::Result<Sandbox> get(const std::string& id);
  /// With --replica-id, the other replicas' live sandboxes are listed too, as the
  /// engine's labels describe them (state from the instance; reason "replica").
  core::Result<SandboxPage> list(const SandboxQuery& query) const;
  /// Stopping -> backend remove -> Terminated ("user_delete"). A Pending sandbox is
  /// ended by its start-up worker once the engine placed it. When the backend cannot
  /// remove it: Failed ("remove_failed", the message counting attempts), the backend's
  /// error returned, and the reaper retries. On a `remove_failed` sandbox the remove is
  /// tried again at once (conflict while a retry is in flight). conflict when already
  /// final otherwise.
  core::Result<void> remove(const std::string& id);
  /// Running -> Pausing -> Paused; conflict from any other state.
  core::Result<void> pause(const std::string& id);
  /// Paused -> Resuming -> Running; conflict from any other state.
  core::Result<void> resume(const std::string& id);
  /// A new absolute expiry: invalid_argument when not in the future, conflict when final.
  core::Result<TimePoint> renew(const std::string& id, TimePoint expires_at);
  /// RFC 7396 merge of metadata (metadata_rules.hpp); conflict when final.
  core::Result<Sandbox> patch_metadata(const std::string& id,
                                       const std::map<std::string, std::optional<std::string>>& patch);
  /// Where `port` of a live sandbox answers: kExecdPort is its execd (wherever the engine
  /// put it); any other port is on the execd's host (the process backend shares the host
  /// network). conflict when the sandbox is not placed yet or final.
  core::Result<SandboxAddress> address(const std::string& id, int port) const;
  /// Which replica serves `id`: here when this one has its row, or when the engine's
  /// instance is labelled this replica's (its row is rebuilt now: a lost table); the
  /// labelled owner otherwise. Here, too, for ids nobody has (the caller's 404 follows).
  /// Without --replica-id always here.
  core::Result<SandboxOwner> owner_of(const std::string& id);
  /// Takes `id` over from an owner that cannot be reached: the row is rebuilt from the
  /// engine (id, token, spec, metadata, expiry, created) and the instance relabelled as
  /// this replica's. If another replica relabelled it first, that one is the owner
  /// (returned, row dropped). not_found when the engine has no such instance.
  core::Result<SandboxOwner> adopt(const std::string& id, const std::string& why);
  /// Whether a replica answers HTTP at `url` (any status); a success is remembered for
  /// replica_probe_ttl, so forwarding to a live owner costs no extra round trip.
  bool is_replica_reachable(const std::string& url);
  /// Forgets that `url` answered (a forward to it just failed to connect).
  void forget_replica(const std::string& url);
  [[nodiscard]] const std::string& replica_id() const { return options_.replica_id; }

  /// For a sandbox on the overflow peer: the peer's own answer for the endpoint
  /// (direct mode hands out what the peer hands out). invalid_argument for a local one.
  core::Result<PeerEndpoint> peer_endpoint(const std::string& id, int port) const;

  [[nodiscard]] ServiceCounters counters() const;
  /// The overflow peer's URL; empty when none is configured.
  [[nodiscard]] std::string overflow_url() const { return options_.overflow ? options_.overflow->url() : ""; }
  [[nodiscard]] std::string_view backend_name() const { return backend_->name(); }

  /// The port SDKs ask endpoints for to reach a sandbox's execd.
  static constexpr int kExecdPort = 44772;

 private:
  struct Entry {
    SandboxRow record;
    std::chrono::steady_clock::time_point accepted;  // for the create latency
    bool is_starting = false;   // a worker owns its start-up
    bool is_busy = false;       // a pause/resume/remove is between its two halves
  };

  /// A transition under mu_: state, reason, message, timestamps, counters, the row.
  void set_state_locked(Entry& e, SandboxState state, std::string reason, std::string message);
  void persist_locked(const Entry& e);
  core::Result<void> check_capacity_locked() const;
  size_t live_count_locked() const;
  Entry* find_locked(const std::string& id);
  const Entry* find_locked(const std::string& id) const;

  void launch(std::function<void()> work);
  void start_sandbox(const std::string& id);
  /// Waits for the placed sandbox's execd, then Running; or removes it (Failed, or
  /// Terminated when deleted meanwhile).
  void await_start(const std::string& id, const Placement& placed, const std::string& token,
                   std::chrono::steady_clock::time_point deadline);
  /// Waits for `placement`'s execd to answer /ping until `deadline`; an error says why not.
  core::Result<void> wait_ready(const std::string& id, const Placement& placement, const std::string& token,
                                std::chrono::steady_clock::time_point deadline);
  void reconcile();
  void reap_loop();
  void reap_once();
  void refill_pools();
  /// Ends a sandbox whose instance is bad or expired: backend remove, then `state`.
  void finish(const std::string& id, SandboxState state, const std::string& reason, const std::string& message);
  /// A backend remove of `e` failed: Failed ("remove_failed", the attempt count, the
  /// error and when the next attempt is), the retry scheduled with backoff; the first
  /// failure records the end (`state`, `reason`, `message`) a later success leads to.
  void removal_failed_locked(Entry& e, const core::Error& error, SandboxState state, std::string reason,
                             std::string message);
  /// A remove succeeded after failed ones: the recorded end, the pending removal gone.
  void removal_done_locked(Entry& e, SandboxState state, std::string reason, std::string message);
  /// The backend's remove of `id`'s instance, called without the lock (an engine call may
  /// take seconds); nullopt when the row is gone, success when it has no instance.
  std::optional<core::Result<void>> remove_instance(const std::string& id);
  /// One reaper-scheduled retry of a failed remove (the entry is marked busy).
  void retry_remove(const std::string& id);
  bool pool_matches(const PoolSpec& pool, const SandboxSpec& spec) const;
  void record_latency_locked(std::chrono::steady_clock::duration d);

  // ---- replicas: labels on the engine's instances ----
  [[nodiscard]] InstanceLabels labels_locked(const Entry& e) const;
  /// Writes the row's labels to its instance on a worker thread (after a renew, a
  /// metadata patch, a pool claim), so requests never wait for the engine.
  void relabel_later(const std::string& id);
  /// Whether an engine instance is this replica's to serve.
  [[nodiscard]] bool is_mine(const Instance& instance) const;
  /// A row for an instance found in the engine (Running, Paused or waited for again).
  void insert_adopted_locked(const Instance& instance, const std::string& why);
  /// Adopts, so that this replica's reaper expires them, the other replicas' instances
  /// whose labelled expiry has passed while their owner does not answer.
  void adopt_expired_orphans();

  // ---- sandboxes on the overflow peer (backend "remote"): the peer owns them ----
  [[nodiscard]] bool is_local(const Entry& e) const { return e.record.sandbox.backend != "remote"; }
  /// bad_gateway when a row on a peer meets a gateway started without --remote.
  core::Result<void> peer_configured_locked(const Entry& e) const;
  /// Places `spec` on the peer as `id` because this gateway is full (`why`).
  core::Result<Sandbox> create_on_peer(SandboxSpec spec, std::string id, const std::string& why);
  /// The peer's view copied into the row (state, reason, message, metadata, expiry);
  /// a sandbox the peer no longer has becomes Failed. Returns the row after it.
  Sandbox mirror_peer_locked(Entry& e, const core::Result<Sandbox>& seen);
  /// GET on the peer, then mirror_peer_locked; bad_gateway when the peer is down.
  core::Result<Sandbox> refresh_from_peer(const std::string& id);

  std::shared_ptr<Backend> backend_;
  std::unique_ptr<SandboxStore> store_;
  ServiceOptions options_;

  mutable std::mutex mu_;
  std::condition_variable cv_;  // wakes the reaper (stop, pool refill)
  bool stopping_ = false;
  size_t start_slots_ = 4;
  size_t starts_in_flight_ = 0;
  std::map<std::string, Entry> sandboxes_;
  ServiceCounters counters_;

  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::mutex workers_mu_;
  std::list<Worker> workers_;
  std::mutex probes_mu_;
  std::map<std::string, std::chrono::steady_clock::time_point> reachable_until_;  // replica URL -> fresh until
  std::thread reaper_;
  std::atomic<bool> started_{false};
};

}  // namespace execd::gateway
