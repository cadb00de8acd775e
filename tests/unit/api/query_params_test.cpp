#include <doctest/doctest.h>

#include "api/query_params.hpp"

using execd::api::parse_uint_param;

TEST_CASE("numeric query parameters: digits only, in range, no overflow, the name in every error") {
  CHECK(parse_uint_param("cursor", "0").value() == 0);
  CHECK(parse_uint_param("cursor", "18446744073709551615").value() == UINT64_MAX);
  CHECK(parse_uint_param("limit", "1000", 1, 1000).value() == 1000);
  for (const char* bad : {"-5", "abc", "", " 5", "5 ", "+5", "0x10", "1e3", "5.0", "12345678901234567890123"}) {
    CAPTURE(bad);
    auto r = parse_uint_param("cursor", bad);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == execd::core::Errc::invalid_argument);
    CHECK(r.error().message.find("'cursor'") != std::string::npos);
  }
  CHECK(parse_uint_param("cursor", "12345678901234567890123").error().message.find("too large") != std::string::npos);
  CHECK_FALSE(parse_uint_param("limit", "0", 1, 1000));
  CHECK_FALSE(parse_uint_param("limit", "1001", 1, 1000));
  CHECK(parse_uint_param("x", std::string(1000, 'z')).error().message.size() < 200);  // quotes a prefix only
}
