#include <doctest/doctest.h>

#include "isolation/limits.hpp"

using namespace execd::isolation;

TEST_CASE("levels parse from their names and nothing else") {
  CHECK(parse_level("none").value() == Level::none);
  CHECK(parse_level("process").value() == Level::process);
  CHECK(parse_level("namespace").value() == Level::namespace_);
  for (const char* bad : {"", "Namespace", "container", "namespace "}) {
    auto r = parse_level(bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == execd::core::Errc::invalid_argument);
    CHECK(r.error().message.find("none, process or namespace") != std::string::npos);
  }
  for (Level l : {Level::none, Level::process, Level::namespace_}) CHECK(parse_level(level_name(l)).value() == l);
}

TEST_CASE("every limit has its request field name and a bound") {
  CHECK(field_name(Limit::memory_mb) == "memory_limit_mb");
  CHECK(field_name(Limit::processes) == "max_processes");
  CHECK(field_name(Limit::cpu_time_s) == "cpu_time_limit_s");
  CHECK(field_name(Limit::output_bytes) == "max_output_bytes");
  CHECK(field_name(Limit::open_files) == "max_open_files");
  CHECK(field_name(Limit::disk_mb) == "disk_limit_mb");
  for (Limit l : kAllLimits) CHECK(max_value(l) > 1);
}

TEST_CASE("network defaults to off only at namespace level") {
  Limits l;
  CHECK(l.has_network());
  l.level = Level::namespace_;
  CHECK_FALSE(l.has_network());
  l.network = true;
  CHECK(l.has_network());
}
