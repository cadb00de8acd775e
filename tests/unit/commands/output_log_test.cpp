#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <string>
#include <thread>

#include "commands/output_log.hpp"

using execd::commands::OutputLog;

namespace {

std::string pattern(size_t from, size_t n) {
  std::string s;
  for (size_t i = from; i < from + n; ++i) s += static_cast<char>('a' + i % 26);
  return s;
}

}  // namespace

TEST_CASE("bytes read back the same before and after moving to the file, at any offset") {
  OutputLog log("");
  log.append(pattern(0, 1000));
  CHECK(log.size() == 1000);
  CHECK(log.read(10, 5) == pattern(10, 5));
  // Crosses kInMemory: the head moves to the file with the new bytes after it.
  log.append(pattern(1000, OutputLog::kInMemory + 5000));
  const size_t total = 1000 + OutputLog::kInMemory + 5000;
  CHECK(log.size() == total);
  CHECK(log.read(0, total) == pattern(0, total));
  CHECK(log.read(995, 10) == pattern(995, 10));
  CHECK(log.read(total - 3, 100) == pattern(total - 3, 3));
  CHECK(log.read(total, 10).empty());
  CHECK(log.read(total + 50, 10).empty());
}

TEST_CASE("a reader polling while the writer appends sees every byte once, in order") {
  OutputLog log("");
  constexpr size_t kTotal = 3 * OutputLog::kInMemory + 777;
  std::thread writer([&] {
    for (size_t off = 0; off < kTotal; off += 97) log.append(pattern(off, std::min<size_t>(97, kTotal - off)));
  });
  std::string seen;
  while (seen.size() < kTotal) seen += log.read(seen.size(), 4096);
  writer.join();
  CHECK(seen == pattern(0, kTotal));
}

TEST_CASE("a sealed log holds no descriptor; reads reopen its file, which goes with the log") {
  const std::string dir = std::filesystem::temp_directory_path() / ("output-log-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    OutputLog log(dir);
    const size_t total = OutputLog::kInMemory * 3;
    log.append(pattern(0, total));
    CHECK(log.holds_descriptor());
    log.seal();
    CHECK(!log.holds_descriptor());
    CHECK(log.read(0, total) == pattern(0, total));
    CHECK(log.read(total - 7, 100) == pattern(total - 7, 7));
    CHECK(!std::filesystem::is_empty(dir));
  }
  CHECK(std::filesystem::is_empty(dir));
  std::filesystem::remove_all(dir);
}

TEST_CASE("a short log never makes a file; sealing it is harmless") {
  OutputLog log("");
  log.append("hello\n");
  log.seal();
  CHECK(!log.holds_descriptor());
  CHECK(log.read(0, 100) == "hello\n");
}
