#include "isolation/limits.hpp"

namespace execd::isolation {
namespace {

struct LimitRow {
  std::string_view field;
  uint64_t max;
  std::string_view name;
  std::string_view value_key;
};

// Indexed by Limit. Bounds keep arithmetic (MiB -> bytes) far from overflow.
constexpr std::array<LimitRow, kAllLimits.size()> kRows = {{
    {"memory_limit_mb", uint64_t{1} << 30, "memory", "value_mb"},
    {"max_processes", uint64_t{1} << 22, "processes", "value"},  // the kernel's pid_max ceiling
    {"cpu_time_limit_s", uint64_t{1} << 31, "cpu_time", "value_s"},
    {"max_output_bytes", uint64_t{1} << 50, "output", "value_bytes"},
    {"max_open_files", uint64_t{1} << 20, "open_files", "value"},  // the kernel's default nr_open
    {"disk_limit_mb", uint64_t{1} << 30, "disk", "value_mb"},
}};

}  // namespace

std::string_view level_name(Level level) {
  switch (level) {
    case Level::none: return "none";
    case Level::process: return "process";
    case Level::namespace_: return "namespace";
  }
  return "none";
}

core::Result<Level> parse_level(std::string_view text) {
  if (text == "none") return Level::none;
  if (text == "process") return Level::process;
  if (text == "namespace") return Level::namespace_;
  return core::make_error(core::Errc::invalid_argument,
                          "unknown isolation level '" + std::string(text) + "' (use none, process or namespace)");
}

std::string_view field_name(Limit limit) { return kRows[static_cast<size_t>(limit)].field; }

std::string_view limit_name(Limit limit) { return kRows[static_cast<size_t>(limit)].name; }

std::string_view value_key(Limit limit) { return kRows[static_cast<size_t>(limit)].value_key; }

uint64_t max_value(Limit limit) { return kRows[static_cast<size_t>(limit)].max; }

}  // namespace execd::isolation
