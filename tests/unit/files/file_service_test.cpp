#include <doctest/doctest.h>

#include <sys/stat.h>

#include "files/file_info.hpp"
#include "files/file_service.hpp"
#include "files/path_resolver.hpp"
#include "support/temp_dir.hpp"

using namespace execd;

TEST_CASE("glob matches base names with *, ?, [..], {a,b} and **") {
  CHECK(files::glob_match("*", "a.txt"));
  CHECK(files::glob_match("*", ".hidden"));
  CHECK(files::glob_match("**", "anything"));
  CHECK(files::glob_match("*.{txt,log}", "x.log"));
  CHECK_FALSE(files::glob_match("*.{txt,log}", "x.bin"));
  CHECK(files::glob_match("f?.[0-9]", "f1.7"));
  CHECK_FALSE(files::glob_match("f?.[0-9]", "f12.7"));
}

TEST_CASE("mode digits are octal digits written in decimal") {
  CHECK(files::mode_from_digits(755).value() == 0755);
  CHECK(files::mode_from_digits(644).value() == 0644);
  CHECK(files::mode_from_digits(4755).value() == 04755);
  CHECK_FALSE(files::mode_from_digits(689));
  CHECK_FALSE(files::mode_from_digits(-1));
  CHECK_FALSE(files::mode_from_digits(77777));
  struct stat st {};
  st.st_mode = S_IFREG | 0750;
  CHECK(files::file_info("/x", st).mode == 750);
}

TEST_CASE("paths are normalised, and a files root refuses what lies outside it") {
  test::TempDir dir;
  files::PathResolver open;
  CHECK(open.absolute("/a/./b/../c").value() == "/a/c");
  CHECK(open.absolute("/../..").value() == "/");
  CHECK_FALSE(open.absolute(""));
  files::PathResolver jailed(dir.str());
  CHECK(jailed.absolute(dir.str() + "/x/../y").value() == dir.str() + "/y");
  auto escaped = jailed.absolute(dir.str() + "/../etc/passwd");
  REQUIRE_FALSE(escaped);
  CHECK(escaped.error().code == core::Errc::forbidden);
  CHECK(jailed.absolute("/etc/passwd").error().code == core::Errc::forbidden);
}

TEST_CASE("AtomicWriter leaves the target alone until commit, and nothing behind on abort") {
  test::TempDir dir;
  const auto target = dir.write("t.txt", "old");
  files::PathResolver resolver;
  {
    auto w = files::AtomicWriter::open(resolver, target.string());
    REQUIRE(w);
    REQUIRE(w->write("new content"));
    CHECK(test::read_file(target) == "old");
  }  // destroyed without commit
  CHECK(test::read_file(target) == "old");
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path())) ++entries;
  CHECK(entries == 1);
  auto w = files::AtomicWriter::open(resolver, target.string(), 5);
  REQUIRE(w);
  CHECK(w->write("12345"));
  auto over = w->write("6");
  REQUIRE_FALSE(over);
  CHECK(over.error().code == core::Errc::too_large);
  REQUIRE(w->commit({}));
  CHECK(test::read_file(target) == "12345");
}
