#include "gateway/metadata_rules.hpp"

#include <doctest/doctest.h>

using namespace execd::gateway;

TEST_CASE("metadata keys follow the Kubernetes label rules; the opensandbox.io/ prefix is reserved") {
  for (const char* key : {"team", "a", "Project_X", "app.kubernetes.io/name", "example.com/v1.2", "x-1"}) {
    CAPTURE(key);
    CHECK(check_metadata_key(key).ok());
  }
  for (const char* key : {"", "-team", "team-", "has space", "ümlaut", "UPPER.com/x", "a/b/c", "/name", "prefix/",
                          "opensandbox.io/owner"}) {
    CAPTURE(key);
    auto r = check_metadata_key(key);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find(std::string("'") + key + "'") != std::string::npos);
  }
  CHECK(check_metadata_key(std::string(63, 'a')).ok());
  CHECK_FALSE(check_metadata_key(std::string(64, 'a')).ok());
  CHECK(check_metadata_key("opensandbox.io/x").error().message.find("reserved") != std::string::npos);
}

TEST_CASE("metadata values are empty or label-shaped, at most 63 characters") {
  CHECK(check_metadata_value("k", "").ok());
  CHECK(check_metadata_value("k", "v1.2_beta-3").ok());
  CHECK(check_metadata_value("k", std::string(63, 'z')).ok());
  CHECK_FALSE(check_metadata_value("k", std::string(64, 'z')).ok());
  CHECK_FALSE(check_metadata_value("k", "Demo Test").ok());
  CHECK_FALSE(check_metadata_value("k", "_x").ok());
  CHECK(check_metadata_value("k", "a b").error().message.find("'a b'") != std::string::npos);
}

TEST_CASE("a merge patch adds, replaces and deletes keys, and changes nothing when any entry is bad") {
  std::map<std::string, std::string> m{{"team", "ml"}, {"project", "apollo"}, {"keep", "yes"}};
  REQUIRE(apply_metadata_patch(m, {{"team", std::nullopt}, {"project", "zeus"}, {"env", "prod"}, {"gone", std::nullopt}})
              .ok());
  CHECK(m == std::map<std::string, std::string>{{"project", "zeus"}, {"env", "prod"}, {"keep", "yes"}});
  REQUIRE(apply_metadata_patch(m, {}).ok());
  CHECK(m.size() == 3);
  auto before = m;
  CHECK_FALSE(apply_metadata_patch(m, {{"new", "ok"}, {"opensandbox.io/x", "y"}}).ok());
  CHECK_FALSE(apply_metadata_patch(m, {{"new", "ok"}, {"bad", "not ok"}}).ok());
  CHECK(m == before);
}
