// The one parser every execution route calls for the isolation and limit fields.
#include <doctest/doctest.h>

#include "api/isolation_fields.hpp"

using namespace execd::isolation;
using execd::api::parse_isolation_fields;
using execd::core::Errc;
using nlohmann::json;

namespace {

Capabilities all_supported() {
  Capabilities c;
  for (auto& l : c.levels) l.supported = true;
  for (auto& l : c.limits) l = {true, Mechanism::cgroup_v1, ""};
  return c;
}

void check_rejects(const json& body, const std::string& field, const Capabilities& caps = all_supported()) {
  auto r = parse_isolation_fields(body, Limits{}, caps);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::invalid_argument);
  CHECK_MESSAGE(r.error().message.find("'" + field + "'") != std::string::npos, r.error().message);
}

}  // namespace

TEST_CASE("absent fields take the daemon's defaults; present ones override them") {
  Limits defaults;
  defaults.level = Level::process;
  defaults.set(Limit::memory_mb, 256);
  auto r = parse_isolation_fields(json::object(), defaults, all_supported());
  REQUIRE(r.ok());
  CHECK(r->level == Level::process);
  CHECK(r->get(Limit::memory_mb) == 256u);
  CHECK_FALSE(r->get(Limit::processes).has_value());

  r = parse_isolation_fields(json{{"isolation", "namespace"}, {"network", false}, {"memory_limit_mb", 128},
                                  {"max_processes", 50}, {"cpu_time_limit_s", 10}, {"max_output_bytes", 1 << 20},
                                  {"max_open_files", 64}, {"disk_limit_mb", 100}},
                             defaults, all_supported());
  REQUIRE(r.ok());
  CHECK(r->level == Level::namespace_);
  CHECK_FALSE(r->has_network());
  CHECK(r->get(Limit::memory_mb) == 128u);
  CHECK(r->get(Limit::processes) == 50u);
  CHECK(r->get(Limit::cpu_time_s) == 10u);
  CHECK(r->get(Limit::output_bytes) == uint64_t{1} << 20);
  CHECK(r->get(Limit::open_files) == 64u);
  CHECK(r->get(Limit::disk_mb) == 100u);
  // null is the same as absent
  r = parse_isolation_fields(json{{"memory_limit_mb", nullptr}}, defaults, all_supported());
  REQUIRE(r.ok());
  CHECK(r->get(Limit::memory_mb) == 256u);
}

TEST_CASE("invalid values are refused naming the field") {
  check_rejects(json{{"isolation", "container"}}, "isolation");
  check_rejects(json{{"isolation", 2}}, "isolation");
  check_rejects(json{{"network", "yes"}}, "network");
  for (Limit l : kAllLimits) {
    const std::string f(field_name(l));
    check_rejects(json{{f, -1}}, f);
    check_rejects(json{{f, 0}}, f);
    check_rejects(json{{f, "12"}}, f);
    check_rejects(json{{f, 1.5}}, f);
    check_rejects(json{{f, max_value(l) + 1}}, f);
  }
  auto r = parse_isolation_fields(json::array(), Limits{}, all_supported());
  CHECK_FALSE(r.ok());
}

TEST_CASE("what the host cannot enforce is refused with the probe's reason") {
  Capabilities caps = all_supported();
  caps.levels[static_cast<size_t>(Level::namespace_)] = {false, "/usr/bin/bwrap not found"};
  caps.limits[static_cast<size_t>(Limit::processes)] = {false, Mechanism::none, "RLIMIT_NPROC is not enforced for root"};
  auto r = parse_isolation_fields(json{{"isolation", "namespace"}}, Limits{}, caps);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("bwrap not found") != std::string::npos);
  r = parse_isolation_fields(json{{"max_processes", 10}}, Limits{}, caps);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("not enforced for root") != std::string::npos);
  // A default the host cannot enforce is refused too, not silently dropped.
  Limits defaults;
  defaults.level = Level::namespace_;
  r = parse_isolation_fields(json::object(), defaults, caps);
  CHECK_FALSE(r.ok());
  check_rejects(json{{"network", false}}, "network");
}
