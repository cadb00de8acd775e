#include "support/http_checks.hpp"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

namespace execd::test {

void check_error(const httplib::Result& r, int status, const std::string& code, const std::string& needle) {
  REQUIRE(r);
  INFO(r->body);
  CHECK(r->status == status);
  CHECK(r->get_header_value("Content-Type").find("application/json") == 0);
  auto body = nlohmann::json::parse(r->body, nullptr, false);
  REQUIRE(body.is_object());
  CHECK(body.value("code", "") == code);
  CHECK(body.value("message", "").find(needle) != std::string::npos);
}

}  // namespace execd::test
