#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace execd::isolation {

/// How far an execution is set apart from the daemon and from other executions.
/// none: as today. process: own session, cleared environment, no new privileges, limits.
/// namespace: `process` plus bubblewrap (user/pid/ipc/uts/mount and, unless network is
/// asked for, network namespaces; read-only system, private /tmp and workspace).
enum class Level { none, process, namespace_ };

/// "none" | "process" | "namespace".
std::string_view level_name(Level level);
/// invalid_argument naming the accepted values for anything else.
core::Result<Level> parse_level(std::string_view text);

/// The numeric limits an execution may carry. Adding one here (and a row in the table in
/// limits.cpp) adds it to the parser, the flags' defaults, the probe and /capabilities.
enum class Limit { memory_mb, processes, cpu_time_s, output_bytes, open_files, disk_mb };
inline constexpr std::array<Limit, 6> kAllLimits = {Limit::memory_mb,    Limit::processes,  Limit::cpu_time_s,
                                                    Limit::output_bytes, Limit::open_files, Limit::disk_mb};

/// The request field (and /capabilities key): "memory_limit_mb", "max_processes", ...
std::string_view field_name(Limit limit);
/// The limit's short name in a terminal event's `killed.limit`: "memory", "processes",
/// "cpu_time", "output", "open_files", "disk".
std::string_view limit_name(Limit limit);
/// The key its value goes under there: "value_mb", "value", "value_s", "value_bytes".
std::string_view value_key(Limit limit);
/// Largest accepted value (values are >= 1; 0 is not "unlimited" in a request).
uint64_t max_value(Limit limit);

/// What one execution asks for. Absent limits are unlimited. `network` absent means "the
/// level's default": off at namespace level, the host's network otherwise.
struct Limits {
  Level level = Level::none;
  std::optional<bool> network;
  std::array<std::optional<uint64_t>, kAllLimits.size()> values{};

  [[nodiscard]] std::optional<uint64_t> get(Limit l) const { return values[static_cast<size_t>(l)]; }
  void set(Limit l, std::optional<uint64_t> v) { values[static_cast<size_t>(l)] = v; }
  /// True when the execution may reach the host's network.
  [[nodiscard]] bool has_network() const { return network.value_or(level != Level::namespace_); }
};

}  // namespace execd::isolation
