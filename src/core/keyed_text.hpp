#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace execd::core {

/// The number after `key` in line-oriented "key value" text, as /proc and cgroup files
/// write it ("MemTotal:  123 kB", "VmHWM:\t42 kB", "btime 1700000000", "usage_usec 5"):
/// `key` must start a line and be followed by ':' or blanks. nullopt when absent.
std::optional<uint64_t> keyed_value(std::string_view text, std::string_view key);

}  // namespace execd::core
