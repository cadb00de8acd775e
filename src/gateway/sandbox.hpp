#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace execd::gateway {

/// The Lifecycle API's SandboxState. Transitions (the service enforces them):
/// pending -> running | failed; running -> pausing -> paused -> resuming -> running;
/// running | paused -> stopping -> terminated; any live state -> failed.
enum class SandboxState { pending, running, pausing, paused, resuming, stopping, terminated, failed };

/// "Pending", "Running", ... as the Lifecycle API spells them.
std::string_view to_string(SandboxState state);
/// The inverse of to_string (exact spelling); nullopt for anything else.
std::optional<SandboxState> parse_state(std::string_view text);
/// True for terminated and failed: nothing runs, the record is kept for a while.
bool is_final(SandboxState state);

/// What a sandbox may use, from the request's `resourceLimits` (Kubernetes quantities:
/// cpu "500m" or "2", memory "512Mi" or "1G"). Zero means "no limit asked".
struct ResourceLimits {
  uint32_t cpu_millis = 0;     ///< 1000 = one core
  uint64_t memory_bytes = 0;
  uint32_t max_pids = 0;       ///< processes and threads in the sandbox
  uint64_t disk_bytes = 0;     ///< workspace quota
};

/// What a create asked for, validated (api/ parses the JSON into this).
struct SandboxSpec {
  std::string image;                         ///< image.uri; backend-specific meaning
  std::vector<std::string> entrypoint;       ///< run beside execd in the sandbox; may be empty
  std::optional<std::chrono::seconds> timeout;  ///< none: manual cleanup, no expiry
  ResourceLimits limits;
  std::map<std::string, std::string> env;
  std::map<std::string, std::string> metadata;
};

/// Where a sandbox's execd answers, as the gateway reaches it, and the backend's own
/// name for the instance (container id, "pid:starttime", pod name), which is what every
/// later backend call takes.
struct Placement {
  std::string handle;
  std::string host;  ///< address the gateway connects to (loopback, container IP, pod IP)
  int port = 0;      ///< execd's port there
};

using TimePoint = std::chrono::system_clock::time_point;

/// A spec as one JSON document (the table's spec column, the process backend's record):
/// read and written whole, never queried. spec_from_json: internal when malformed.
std::string spec_to_json(const SandboxSpec& spec);
core::Result<SandboxSpec> spec_from_json(const std::string& text);

/// What the engine keeps beside an instance (process record, container labels, pod
/// annotations) so that any gateway replica can rebuild the sandbox's row from the engine
/// alone: who serves it now and everything the row holds that the engine does not.
struct InstanceLabels {
  std::string owner_replica;  ///< --replica-id of the gateway serving it; empty: no replicas configured
  std::string owner_url;      ///< where that replica is reached (its --advertise-url)
  std::string access_token;   ///< the sandbox's execd token
  SandboxSpec spec;           ///< as created; metadata as last patched
  TimePoint created_at{};
  std::optional<TimePoint> expires_at;  ///< as last renewed
};

/// One row of the sandbox table: the spec, where it runs and its lifecycle status.
struct Sandbox {
  std::string id;
  std::string backend;                 ///< Backend::name() of the backend that placed it
  SandboxSpec spec;
  SandboxState state = SandboxState::pending;
  std::string reason;                  ///< machine-readable: "provisioning", "user_delete", "ttl_expiry", ...
  std::string message;                 ///< for a human
  TimePoint created_at{};
  TimePoint updated_at{};
  TimePoint last_transition_at{};
  std::optional<TimePoint> expires_at;  ///< none: manual cleanup
  std::string access_token;            ///< the sandbox's execd token (X-EXECD-ACCESS-TOKEN)
  Placement placement;                 ///< empty handle until the backend placed it
};

}  // namespace execd::gateway
