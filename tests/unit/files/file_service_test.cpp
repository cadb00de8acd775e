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

TEST_CASE("AtomicWriter replaces a large file exactly, through the service's closer") {
  test::TempDir dir;
  files::FileService::Options options;
  files::FileService service(options);
  const auto target = dir.write("big.bin", std::string(3 << 20, 'o'));
  // Odd-sized pieces across the 64 KiB batches and 256 KiB writeback starts.
  std::string expected;
  for (size_t i = 0; expected.size() < (1 << 20) + 12345; ++i) expected += std::string(1000 + i % 7000, static_cast<char>('a' + i % 26));
  auto w = service.open_writer(target.string());
  REQUIRE(w);
  for (size_t at = 0; at < expected.size(); at += 4093) REQUIRE(w->write(std::string_view(expected).substr(at, 4093)));
  CHECK(w->written() == expected.size());
  CHECK(test::read_file(target) == std::string(3 << 20, 'o'));
  REQUIRE(w->commit({}));
  CHECK(test::read_file(target) == expected);
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path())) ++entries;
  CHECK(entries == 1);
}
