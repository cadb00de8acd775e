#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/result.hpp"
#include "gateway/sandbox.hpp"

namespace execd::gateway::api {

/// The Lifecycle API's JSON for sandboxes, both ways: the one place its keys are spelled.

/// "2026-11-30T10:00:00.123Z": UTC, milliseconds, Z.
std::string iso8601(TimePoint t);
/// RFC 3339: date, 'T', time with optional fraction, then Z or +hh:mm / -hh:mm.
/// invalid_argument naming `field` otherwise.
core::Result<TimePoint> parse_iso8601(std::string_view field, std::string_view text);

/// A CreateSandboxRequest into a SandboxSpec: `image.uri` required; `entrypoint` an
/// array of strings (may be absent); `timeout` absent/null (no expiry) or whole seconds
/// >= 1; `resourceLimits` Kubernetes quantities; `env` and `metadata` string maps. Unknown
/// fields are ignored. invalid_argument names the field at fault; `snapshotId` is
/// not_supported (no snapshots here).
core::Result<SandboxSpec> parse_create_request(const nlohmann::json& body);

/// A PatchSandboxMetadataRequest: an object of string or null values.
core::Result<std::map<std::string, std::optional<std::string>>> parse_metadata_patch(const nlohmann::json& body);

/// `Sandbox` (GET): id, image, status, metadata, entrypoint, expiresAt, createdAt, updatedAt.
nlohmann::json sandbox_json(const Sandbox& s);
/// `CreateSandboxResponse`: id, status, metadata, expiresAt, createdAt, entrypoint.
nlohmann::json create_response_json(const Sandbox& s);

}  // namespace execd::gateway::api
