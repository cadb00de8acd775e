#include <doctest/doctest.h>

#include "core/result.hpp"

using execd::core::Errc;
using execd::core::make_error;
using execd::core::Result;

TEST_CASE("Result holds a value or an error") {
  Result<int> ok = 7;
  CHECK(ok.ok());
  CHECK(*ok == 7);
  Result<int> bad = make_error(Errc::not_found, "no such thing");
  CHECK_FALSE(bad.ok());
  CHECK(bad.error().code == Errc::not_found);
  CHECK(bad.error().message == "no such thing");
  Result<void> v;
  CHECK(v.ok());
  Result<void> vbad = make_error(Errc::conflict, "busy");
  CHECK_FALSE(vbad.ok());
  CHECK(vbad.error().code == Errc::conflict);
}
