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

std::string base64(const std::string& in) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += kAlphabet[(acc >> bits) & 63];
    }
  }
  if (bits > 0) out += kAlphabet[(acc << (6 - bits)) & 63];
  while (out.size() % 4 != 0) out += '=';
  return out;
}

}  // namespace execd::test
