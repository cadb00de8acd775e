#pragma once

#include <string>
#include <string_view>

#include "core/result.hpp"
#include "gateway/sandbox.hpp"

namespace execd::gateway {

/// "2026-11-30T10:00:00.123Z": UTC, milliseconds, Z (the Lifecycle API's timestamps).
std::string format_rfc3339_ms(TimePoint t);

/// RFC 3339: date, 'T', time with optional fraction, then Z or +hh:mm / -hh:mm.
/// invalid_argument naming `field` and quoting `text` otherwise. Shared by the API's
/// parser (requests) and the remote backend (a peer gateway's answers).
core::Result<TimePoint> parse_rfc3339(std::string_view field, std::string_view text);

}  // namespace execd::gateway
