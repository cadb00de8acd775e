#include <doctest/doctest.h>

#include "core/keyed_text.hpp"

using namespace execd;

TEST_CASE("keyed_value reads /proc and cgroup key-value text") {
  const char* meminfo = "MemTotal:       24684096 kB\nMemFree:         1000 kB\nMemAvailable:   20000000 kB\n";
  CHECK(core::keyed_value(meminfo, "MemTotal") == 24684096u);
  CHECK(core::keyed_value(meminfo, "MemAvailable") == 20000000u);
  CHECK(core::keyed_value(meminfo, "Mem") == std::nullopt);  // only whole keys
  CHECK(core::keyed_value(meminfo, "Cached") == std::nullopt);
  CHECK(core::keyed_value("Name:\tbash\nVmHWM:\t   4242 kB\n", "VmHWM") == 4242u);
  CHECK(core::keyed_value("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n", "btime") == 1700000000u);
  CHECK(core::keyed_value("usage_usec 17\nuser_usec 5", "user_usec") == 5u);  // last line, no newline
  CHECK(core::keyed_value("xusage_usec 17\n", "usage_usec") == std::nullopt);  // must start a line
}
