#include <doctest/doctest.h>

#include "files/disk_quota.hpp"
#include "support/temp_dir.hpp"

using execd::files::DiskQuota;

TEST_CASE("disk quota: rescan counts the tree once; charges past the limit are refused, kept or refunded") {
  execd::test::TempDir dir;
  dir.write("a", std::string(1000, 'a'));
  dir.write("sub/b", std::string(500, 'b'));
  DiskQuota q(dir.str(), 2000);
  q.rescan();
  CHECK(q.used() == 1500);
  {
    auto c = q.charge(400, "x");
    REQUIRE(c);
    CHECK(q.used() == 1900);
    // Pending charges count: a second writer cannot take the same room.
    auto refused = q.charge(200, "y");
    REQUIRE_FALSE(refused);
    CHECK(refused.error().code == execd::core::Errc::no_space);
    CHECK(refused.error().message.find("quota") != std::string::npos);
    CHECK(refused.error().message.find("1.9 KiB") != std::string::npos);  // the usage
    CHECK(refused.error().message.find("2.0 KiB") != std::string::npos);  // the quota
  }
  CHECK(q.used() == 1500);  // not kept: refunded
  {
    auto c = q.charge(300, "x");
    REQUIRE(c);
    c.value().keep();
  }
  CHECK(q.used() == 1800);
  auto shrink = q.charge(-800, "z");  // freeing always passes
  REQUIRE(shrink);
  shrink.value().keep();
  CHECK(q.used() == 1000);
  q.adjust(-1000);
  CHECK(q.used() == 0);
}

TEST_CASE("disk quota: human sizes") {
  CHECK(DiskQuota::human(512) == "512 B");
  CHECK(DiskQuota::human(1536) == "1.5 KiB");
  CHECK(DiskQuota::human(10ull << 20) == "10.0 MiB");
}

TEST_CASE("disk quota: a charge grows as a writer reserves, settles to the final change, or is refunded") {
  execd::test::TempDir dir;
  DiskQuota q(dir.str(), 1000);
  q.rescan();
  {
    auto c = q.charge(0, "w");
    REQUIRE(c);
    REQUIRE(q.extend(c.value(), 600, "w"));
    CHECK(q.used() == 600);
    auto refused = q.extend(c.value(), 500, "w");
    REQUIRE_FALSE(refused);
    CHECK(refused.error().code == execd::core::Errc::no_space);
    CHECK(q.used() == 600);  // a refused extension takes nothing
    CHECK_FALSE(q.check_room(401, "other"));
    CHECK(q.check_room(400, "other"));
    q.settle(c.value(), 250);  // the write ended smaller than reserved
    CHECK(q.used() == 250);
    c.value().keep();
  }
  CHECK(q.used() == 250);
  {
    auto c = q.charge(0, "aborted");
    REQUIRE(c);
    REQUIRE(q.extend(c.value(), 700, "aborted"));
    CHECK(q.used() == 950);
  }
  CHECK(q.used() == 250);  // destroyed without keep(): all of it back
}
