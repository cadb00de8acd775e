#include "pty/scrollback.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <thread>

using namespace execd;
using namespace std::chrono_literals;

namespace {

// The byte at absolute offset `o` of the test stream: checkable anywhere.
char byte_at(uint64_t o) {
  return static_cast<char>('a' + (o * 7 + o / 251) % 26);
}

std::string stream(uint64_t from, size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = byte_at(from + i);
  return s;
}

}  // namespace

TEST_CASE("bytes keep absolute offsets; a read is of one channel and says where it starts") {
  pty::Scrollback sb({});
  sb.append(1, "hello ");
  sb.append(2, "err");
  sb.append(1, "world");
  CHECK(sb.begin() == 0);
  CHECK(sb.end() == 14);
  auto c = sb.read(0, 100);
  CHECK(c.offset == 0);
  CHECK(c.channel == 1);
  CHECK(c.bytes == "hello ");
  c = sb.read(6, 100);
  CHECK(c.channel == 2);
  CHECK(c.bytes == "err");
  c = sb.read(7, 1);
  CHECK(c.offset == 7);
  CHECK(c.bytes == "r");
  c = sb.read(9, 100);
  CHECK(c.channel == 1);
  CHECK(c.bytes == "world");
  c = sb.read(14, 100);
  CHECK(c.offset == 14);
  CHECK(c.bytes.empty());
  c = sb.read(999, 100);  // past the end: at the end
  CHECK(c.offset == 14);
  CHECK(c.bytes.empty());
}

TEST_CASE("memory stays bounded: older bytes go to disk and read back exactly; the disk is capped too") {
  pty::Scrollback::Options o;
  o.memory_bytes = 64 * 1024;
  o.disk_bytes = 1 << 20;
  pty::Scrollback sb(o);
  uint64_t written = 0;
  while (written < 10u << 20) {
    const size_t n = 3000 + written % 5000;
    sb.append(1, stream(written, n));
    written += n;
    REQUIRE(sb.memory_bytes() <= o.memory_bytes);
    REQUIRE(sb.disk_bytes() <= o.disk_bytes + o.disk_bytes / 4);
  }
  CHECK(sb.end() == written);
  CHECK(sb.disk_bytes() > 0);
  const uint64_t first = sb.begin();
  CHECK(first > 0);
  CHECK(written - first >= o.disk_bytes - o.disk_bytes / 4);
  // Asking for offset 0 starts at the oldest byte kept, and says so.
  auto c = sb.read(0, 5000);
  CHECK(c.offset == first);
  CHECK(c.bytes == stream(first, c.bytes.size()));
  // Every kept byte reads back, across segment and memory boundaries.
  uint64_t at = first;
  while (at < written) {
    c = sb.read(at, 100000);
    REQUIRE(c.offset == at);
    REQUIRE_FALSE(c.bytes.empty());
    REQUIRE(c.bytes == stream(at, c.bytes.size()));
    at += c.bytes.size();
  }
  CHECK(at == written);
}

TEST_CASE("a waiting reader wakes on new bytes and on close") {
  pty::Scrollback sb({});
  CHECK_FALSE(sb.wait_beyond(0, 20ms));
  std::thread writer([&] {
    std::this_thread::sleep_for(50ms);
    sb.append(1, "x");
  });
  const auto start = std::chrono::steady_clock::now();
  CHECK(sb.wait_beyond(0, 5000ms));
  CHECK(std::chrono::steady_clock::now() - start < 4s);
  writer.join();
  std::thread closer([&] {
    std::this_thread::sleep_for(50ms);
    sb.close();
  });
  CHECK_FALSE(sb.wait_beyond(1, 5000ms));
  CHECK(sb.is_closed());
  closer.join();
  sb.append(1, "late");  // ignored once closed
  CHECK(sb.end() == 1);
}
