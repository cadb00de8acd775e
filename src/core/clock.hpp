#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace execd::core {

/// Wall-clock time as Unix milliseconds: the `timestamp` of every event.
inline int64_t unix_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

/// Monotonic time for durations and deadlines.
using SteadyClock = std::chrono::steady_clock;

/// RFC 3339 UTC time with nanoseconds, e.g. "2026-11-23T10:00:00.123456789Z".
std::string rfc3339_nano(std::chrono::system_clock::time_point t);

}  // namespace execd::core
