#include "gateway/resource_quantity.hpp"

#include <doctest/doctest.h>

using execd::gateway::format_resource_limits;
using execd::gateway::parse_quantity_millis;
using execd::gateway::parse_resource_limits;

TEST_CASE("quantities in the Kubernetes forms read as exact thousandths") {
  struct Case {
    const char* text;
    uint64_t millis;
  };
  const Case cases[] = {
      {"500m", 500},           {"2", 2000},
      {"0.5", 500},            {".5", 500},
      {"+1", 1000},            {"1k", 1'000'000},
      {"512Mi", 536870912000}, {"1G", 1'000'000'000'000},
      {"1Gi", 1073741824000},  {"1e3", 1'000'000},
      {"1E3", 1'000'000},      {"25e-1", 2500},
      {"1.5Gi", 1610612736000}, {"0", 0},
      {"0.0001", 1},  // rounded up to the next thousandth, as Kubernetes does
      {"100u", 1},             {"007", 7000},
  };
  for (const auto& c : cases) {
    CAPTURE(c.text);
    auto r = parse_quantity_millis("cpu", c.text);
    REQUIRE(r.ok());
    CHECK(*r == c.millis);
  }
}

TEST_CASE("malformed quantities are refused, naming the field and the value") {
  for (const char* text : {"", "-1", "abc", "1.2.3", "1x", "1 Gi", " 1", "1Gi ", "1e", "1e+", "e3", ".", "1mi",
                           "1KI", "10Ei", "99999999999999999999999999999999", "1e99"}) {
    CAPTURE(text);
    auto r = parse_quantity_millis("memory", text);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == execd::core::Errc::invalid_argument);
    CHECK(r.error().message.find("resourceLimits.memory") != std::string::npos);
    CHECK(r.error().message.find(std::string("'") + text + "'") != std::string::npos);
  }
}

TEST_CASE("resourceLimits map onto ResourceLimits with units checked per resource") {
  auto ok = parse_resource_limits({{"cpu", "500m"}, {"memory", "512Mi"}, {"pids", "64"}, {"disk", "1G"}});
  REQUIRE(ok.ok());
  CHECK(ok->cpu_millis == 500);
  CHECK(ok->memory_bytes == 512ull << 20);
  CHECK(ok->max_pids == 64);
  CHECK(ok->disk_bytes == 1'000'000'000ull);
  CHECK(parse_resource_limits({{"ephemeral-storage", "2Gi"}})->disk_bytes == 2ull << 30);
  CHECK(parse_resource_limits({})->memory_bytes == 0);

  auto expect_bad = [](std::map<std::string, std::string> fields, const std::string& needle) {
    auto r = parse_resource_limits(fields);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find(needle) != std::string::npos);
  };
  expect_bad({{"memory", "0.5"}}, "whole number");        // half a byte
  expect_bad({{"memory", "0"}}, "greater than zero");
  expect_bad({{"cpu", "0"}}, "at least 1m");
  expect_bad({{"pids", "1.5"}}, "resourceLimits.pids");
  expect_bad({{"gpu", "1"}}, "resourceLimits.gpu");
  expect_bad({{"memory", "lots"}}, "'lots'");
}

TEST_CASE("formatted limits read back as the same limits") {
  execd::gateway::ResourceLimits limits{1500, 256ull << 20, 32, 1ull << 30};
  auto text = format_resource_limits(limits);
  CHECK(text["cpu"] == "1500m");
  auto back = parse_resource_limits(text);
  REQUIRE(back.ok());
  CHECK(back->cpu_millis == 1500);
  CHECK(back->memory_bytes == 256ull << 20);
  CHECK(back->max_pids == 32);
  CHECK(back->disk_bytes == 1ull << 30);
  CHECK(format_resource_limits({}).empty());
}
