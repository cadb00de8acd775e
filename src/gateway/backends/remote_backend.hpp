#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gateway/backend.hpp"
#include "http/client.hpp"

namespace execd::gateway {

/// A peer execd-gateway's answer to GET /v1/sandboxes/{id}/endpoints/{port}.
struct PeerEndpoint {
  std::string endpoint;                        ///< as the peer spelled it
  std::map<std::string, std::string> headers;  ///< X-EXECD-ACCESS-TOKEN, ...
};

/// The `remote` backend: another execd-gateway (a cloud cluster's, say) that this one
/// overflows to. The peer owns every sandbox placed on it (its engine, its reaper, its
/// copy of expiresAt); this class is its Lifecycle API client, over http/client (one
/// exchange per call, `timeout` each, the peer's OPEN-SANDBOX-API-KEY on every call).
///
/// The sandbox keeps its id on both sides: create sends it in `X-Execd-Sandbox-Id`,
/// which a gateway honours from any caller holding its API key (the id's form is
/// checked there). Placement::handle is the peer's id, host/port the peer's address.
///
/// Errors: a peer that cannot be reached (or answers garbage) is bad_gateway naming
/// its URL, except for create, where it is unavailable (a new sandbox cannot be placed:
/// 503). A peer's own 4xx/503 comes back as the same kind with the peer's message
/// (`peer http://...: ...`). Thread-safe: no state beyond the options.
class RemoteBackend final : public Backend {
 public:
  struct Options {
    std::string url;      ///< http://host:port of the peer gateway (no path)
    std::string api_key;  ///< the peer's OPEN-SANDBOX-API-KEY; empty: none sent
    std::chrono::milliseconds timeout{10000};
  };

  /// invalid_argument when `url` is not http://host:port.
  static core::Result<std::unique_ptr<RemoteBackend>> open(Options options);

  [[nodiscard]] std::string_view name() const override { return "remote"; }
  /// The peer validates what it is sent: nothing to check here without a round trip.
  core::Result<void> validate(const SandboxSpec& spec) const override;
  /// The peer answers for its own room at create (its 503 CAPACITY comes back as capacity).
  core::Result<void> has_room(const SandboxSpec& spec) const override;
  /// POST /v1/sandboxes with the id in X-Execd-Sandbox-Id; the token is the peer's to
  /// choose (endpoint() hands it out). Returns once the peer answered 202.
  core::Result<Placement> create(const std::string& sandbox_id, const SandboxSpec& spec,
                                 const std::string& access_token) override;
  /// The peer's state as a phase: Pending starting, Running/Pausing/Resuming/Stopping
  /// running, Paused paused, Failed/Terminated exited (message: reason and message), 404 gone.
  core::Result<InstanceStatus> inspect(const Placement& placement) override;
  core::Result<void> pause(const Placement& placement) override;
  core::Result<void> resume(const Placement& placement) override;
  /// DELETE; a sandbox the peer no longer has, or already ended, counts as removed.
  core::Result<void> remove(const Placement& placement) override;
  /// Every live sandbox the peer lists (all pages).
  core::Result<std::vector<Instance>> list() override;

  // ---- beyond Backend: the peer owns the lifecycle, so reads and updates go there ----

  /// The peer's view of the sandbox (GET): state, reason, message, metadata, expiresAt, ...
  core::Result<Sandbox> describe(const std::string& peer_id) const;
  /// POST .../renew-expiration; the peer's new expiresAt.
  core::Result<TimePoint> renew(const std::string& peer_id, TimePoint expires_at) const;
  /// PATCH .../metadata (RFC 7396 merge); the peer's view after it.
  core::Result<Sandbox> patch_metadata(const std::string& peer_id,
                                       const std::map<std::string, std::optional<std::string>>& patch) const;
  /// GET .../endpoints/{port} (?use_server_proxy=true when `use_proxy`).
  core::Result<PeerEndpoint> endpoint(const std::string& peer_id, int port, bool use_proxy) const;

  [[nodiscard]] const std::string& url() const { return options_.url; }
  [[nodiscard]] const http::ClientEndpoint& peer() const { return peer_; }
  [[nodiscard]] const std::string& api_key() const { return options_.api_key; }

 private:
  RemoteBackend(Options options, http::ClientEndpoint peer) : options_(std::move(options)), peer_(std::move(peer)) {}
  /// One exchange with the peer; unreachable -> bad_gateway naming the peer and `what`.
  core::Result<http::ClientResponse> call(const std::string& method, const std::string& target, std::string body,
                                          const std::string& what) const;

  Options options_;
  http::ClientEndpoint peer_;
};

}  // namespace execd::gateway
