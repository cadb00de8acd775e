#pragma once

#include <nlohmann/json.hpp>

#include "core/result.hpp"
#include "isolation/isolator.hpp"
#include "isolation/limits.hpp"

namespace execd::api {

/// The isolation and limit fields every execution request shares (/command, /session,
/// /code/context, later /invoke): `isolation`, `network`, `memory_limit_mb`,
/// `max_processes`, `cpu_time_limit_s`, `max_output_bytes`, `max_open_files`,
/// `disk_limit_mb`. Absent fields take `defaults` (the daemon's flags). Errors are
/// invalid_argument naming the field: a wrong type, a number below 1 or above its bound,
/// an unknown level, or anything `caps` says this host cannot enforce.
/// Every route calls this one function, so a new limit is added in one place.
core::Result<isolation::Limits> parse_isolation_fields(const nlohmann::json& body, const isolation::Limits& defaults,
                                                       const isolation::Capabilities& caps);

/// The same with the daemon's Isolator (its defaults and probed capabilities).
core::Result<isolation::Limits> parse_isolation_fields(const nlohmann::json& body, isolation::Isolator& isolator);

/// What an execution route calls: parse_isolation_fields with `isolator`, or, where the
/// daemon has none, level none without limits (and a 400 if the body asks for any).
core::Result<isolation::Limits> request_limits(const nlohmann::json& body, isolation::Isolator* isolator);

}  // namespace execd::api
