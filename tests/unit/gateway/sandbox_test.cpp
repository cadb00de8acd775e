#include <doctest/doctest.h>

#include "gateway/sandbox.hpp"

using namespace execd::gateway;

TEST_CASE("sandbox states spell as the Lifecycle API does, both ways") {
  for (auto s : {SandboxState::pending, SandboxState::running, SandboxState::pausing, SandboxState::paused,
                 SandboxState::resuming, SandboxState::stopping, SandboxState::terminated, SandboxState::failed}) {
    const auto name = to_string(s);
    REQUIRE(parse_state(name).has_value());
    CHECK(*parse_state(name) == s);
  }
  CHECK(to_string(SandboxState::running) == "Running");
  CHECK_FALSE(parse_state("running").has_value());
  CHECK_FALSE(parse_state("").has_value());
  CHECK(is_final(SandboxState::terminated));
  CHECK(is_final(SandboxState::failed));
  CHECK_FALSE(is_final(SandboxState::paused));
}
