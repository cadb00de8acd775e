#include <doctest/doctest.h>

#include "core/bytes.hpp"

using namespace execd;

TEST_CASE("the token compare is exact") {
  CHECK(core::constant_time_equals("s3cret", "s3cret"));
  CHECK_FALSE(core::constant_time_equals("s3cret", "s3cre"));
  CHECK_FALSE(core::constant_time_equals("s3cret", "s3cret!"));
  CHECK_FALSE(core::constant_time_equals("s3cret", ""));
  CHECK_FALSE(core::constant_time_equals("s3cret", "S3cret"));
  CHECK_FALSE(core::constant_time_equals("ab", "abab"));  // a repeated prefix is not a match
  CHECK(core::constant_time_equals("", ""));
}

TEST_CASE("to_hex writes two lowercase digits a byte") {
  const unsigned char bytes[] = {0x00, 0x0f, 0xa5, 0xff};
  CHECK(core::to_hex(bytes, sizeof bytes) == "000fa5ff");
  CHECK(core::to_hex(bytes, 0).empty());
}
