#include <doctest/doctest.h>

#include <regex>
#include <set>

#include "core/clock.hpp"
#include "core/id.hpp"

TEST_CASE("new_id is 32 lowercase hex, UUIDv4 bits set, and unique") {
  std::set<std::string> seen;
  const std::regex hex32("^[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}$");
  for (int i = 0; i < 1000; ++i) {
    const auto id = execd::core::new_id();
    CHECK(std::regex_match(id, hex32));
    seen.insert(id);
  }
  CHECK(seen.size() == 1000);
}

TEST_CASE("new_uuid has dashes in the 8-4-4-4-12 places") {
  const auto u = execd::core::new_uuid();
  CHECK(std::regex_match(u, std::regex("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")));
}

TEST_CASE("rfc3339_nano formats UTC with nine fractional digits") {
  using namespace std::chrono;
  const system_clock::time_point t{seconds(1700000000) + nanoseconds(123456789)};
  CHECK(execd::core::rfc3339_nano(t) == "2023-11-14T22:13:20.123456789Z");
}
