#include "core/json_parse.hpp"

#include <doctest/doctest.h>

#include <string>

using execd::core::json_depth_within;
using execd::core::parse_json;

TEST_CASE("parse_json refuses nesting past the limit before parsing, at any size") {
  const std::string deep = std::string(300000, '[') + std::string(300000, ']');
  auto r = parse_json(deep);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("deeper than 256") != std::string::npos);

  const std::string ok = std::string(256, '[') + std::string(256, ']');
  CHECK(parse_json(ok).ok());
  CHECK_FALSE(parse_json(std::string(257, '{')).ok());
}

TEST_CASE("brackets inside strings, escaped quotes included, do not count as nesting") {
  CHECK(json_depth_within(R"({"a": "[[[[[\"[[[[["})", 1));
  CHECK_FALSE(json_depth_within(R"({"a": "\\", "b": [[]]})", 2));
  CHECK(parse_json(R"({"a": "[[[[[\"[[[[["})", 1).ok());
}

TEST_CASE("parse_json answers errors as values for malformed input") {
  CHECK_FALSE(parse_json("").ok());
  CHECK_FALSE(parse_json("{\"a\":").ok());
  CHECK_FALSE(parse_json("\xff\xfe").ok());
  auto r = parse_json(R"j({"code": "print(1)"})j");
  REQUIRE(r.ok());
  CHECK(r.value()["code"] == "print(1)");
}
