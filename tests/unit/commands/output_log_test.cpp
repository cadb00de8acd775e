#include <doctest/doctest.h>

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
