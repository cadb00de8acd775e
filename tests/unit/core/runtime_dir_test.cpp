#include "core/runtime_dir.hpp"

#include <doctest/doctest.h>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <vector>

#include "support/temp_dir.hpp"

using execd::core::RuntimeDir;
namespace fs = std::filesystem;

TEST_CASE("a runtime directory is private, locked while it lives and removed with it") {
  execd::test::TempDir tmp;
  const std::string base = tmp.str() + "/rt";
  std::string path;
  {
    auto dir = RuntimeDir::create(base);
    REQUIRE(dir.ok());
    path = dir.value().path();
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0700);
    auto sub = dir.value().subdir("kernels");
    REQUIRE(sub.ok());
    CHECK(fs::is_directory(sub.value()));

    // A second daemon on the same base leaves a live one's directory alone.
    std::vector<std::string> seen;
    auto other = RuntimeDir::create(base, [&](const std::string& p) { seen.push_back(p); });
    REQUIRE(other.ok());
    CHECK(seen.empty());
    CHECK(fs::exists(path));
  }
  CHECK_FALSE(fs::exists(path));
}

TEST_CASE("what a dead daemon left is handed to the hook, then removed") {
  execd::test::TempDir tmp;
  const std::string base = tmp.str() + "/rt";
  REQUIRE(::mkdir(base.c_str(), 0700) == 0);
  const std::string stale = base + "/execd-12345-deadbeef";
  REQUIRE(::mkdir(stale.c_str(), 0700) == 0);
  std::ofstream(stale + "/lock") << "";
  std::ofstream(stale + "/spill") << "old bytes";
  const std::string unrelated = base + "/not-ours";
  REQUIRE(::mkdir(unrelated.c_str(), 0700) == 0);

  std::vector<std::string> seen;
  auto dir = RuntimeDir::create(base, [&](const std::string& p) {
    seen.push_back(p);
    CHECK(fs::exists(p + "/spill"));  // still there while the hook runs
  });
  REQUIRE(dir.ok());
  REQUIRE(seen.size() == 1);
  CHECK(seen[0] == stale);
  CHECK_FALSE(fs::exists(stale));
  CHECK(fs::exists(unrelated));
}

TEST_CASE("a base writable by others is refused") {
  execd::test::TempDir tmp;
  const std::string base = tmp.str() + "/open";
  REQUIRE(::mkdir(base.c_str(), 0700) == 0);
  REQUIRE(::chmod(base.c_str(), 0777) == 0);
  auto dir = RuntimeDir::create(base);
  REQUIRE_FALSE(dir.ok());
  CHECK(dir.error().message.find("writable only by it") != std::string::npos);
}
